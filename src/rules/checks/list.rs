//! Checks on list requests (ListUsers, ListGroups): the query string and the filter.
//! Each check parses what it needs from the [`RequestView`]; parsing a filter costs
//! about a microsecond and lists are a small share of a sync's traffic.

use crate::rules::context::{Reporter, RequestView, State};
use crate::scim::filter::{AttrPath, CompValue, Filter};
use crate::scim::Query;

/// The query, when it decoded; `query-parses` reports when it did not.
fn query<'q>(request: &'q RequestView<'_>) -> Option<&'q Query> {
    request.query.as_ref().ok()
}

/// The filter's text and tree, when there is a filter and it parses; `filter-parses`
/// reports when it does not.
fn filter(request: &RequestView<'_>, state: &State) -> Option<(String, Filter)> {
    let text = query(request)?.filter.clone()?;
    let parsed = state.filter(request)?.as_ref().ok()?.clone();
    Some((text, parsed))
}

pub(crate) fn query_parses(r: &Reporter<'_>, request: &RequestView<'_>, state: &mut State) {
    match request.query {
        Err(e) => r.report(state, "query", &[("problem", e.to_string())]),
        Ok(q) => {
            for name in &q.repeated {
                let problem = format!("parameter `{name}` is given more than once; servers disagree on which value wins");
                r.report(state, format!("query:{name}"), &[("problem", problem)]);
            }
        }
    }
}

pub(crate) fn filter_parses(r: &Reporter<'_>, request: &RequestView<'_>, state: &mut State) {
    let Some(q) = query(request) else { return };
    let (Some(text), Some(Err(e))) = (&q.filter, state.filter(request)) else {
        return;
    };
    let vars = [
        ("filter", text.clone()),
        ("column", e.column.to_string()),
        ("problem", e.message()),
        ("hint", e.hint().unwrap_or_default()),
    ];
    r.report(state, "query:filter", &vars);
}

pub(crate) fn filter_operators(
    r: &Reporter<'_>,
    operators: &[String],
    logical: &[String],
    request: &RequestView<'_>,
    state: &mut State,
) {
    let Some((text, parsed)) = filter(request, state) else {
        return;
    };
    let mut refused: Vec<String> = Vec::new();
    for term in parsed.terms() {
        let op = term.op.map(|o| o.as_str()).unwrap_or("pr");
        if !operators.iter().any(|a| a.eq_ignore_ascii_case(op)) && !refused.iter().any(|x| x == op)
        {
            refused.push(op.to_owned());
        }
    }
    for op in parsed.logical_operators() {
        if !logical.iter().any(|a| a.eq_ignore_ascii_case(op)) && !refused.iter().any(|x| x == op) {
            refused.push(op.to_owned());
        }
    }
    if refused.is_empty() {
        return;
    }
    let supported = operators
        .iter()
        .chain(logical)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    r.report(
        state,
        "query:filter",
        &[
            ("filter", text),
            ("operators", refused.join(", ")),
            ("supported", supported),
        ],
    );
}

/// How a rule names a filter attribute: `userName`, `members.value`, `manager`, with
/// the URN left out (AWS matches the enterprise `manager` with or without it).
fn rule_name(attr: &AttrPath) -> String {
    match &attr.sub_attr {
        Some(sub) => format!("{}.{sub}", attr.name),
        None => attr.name.clone(),
    }
}

pub(crate) fn filter_attribute_sets(
    r: &Reporter<'_>,
    sets: &[Vec<String>],
    request: &RequestView<'_>,
    state: &mut State,
) {
    let Some((text, parsed)) = filter(request, state) else {
        return;
    };
    let mut used: Vec<String> = Vec::new();
    for term in parsed.terms() {
        let name = match term.parent {
            Some(parent) => format!("{}.{}", parent.name, term.attr.name),
            None => rule_name(term.attr),
        };
        if !used.iter().any(|u| u.eq_ignore_ascii_case(&name)) {
            used.push(name);
        }
    }
    let matches = |set: &Vec<String>| {
        set.len() == used.len()
            && set
                .iter()
                .all(|s| used.iter().any(|u| u.eq_ignore_ascii_case(s)))
    };
    if sets.iter().any(matches) {
        return;
    }
    let supported = sets
        .iter()
        .map(|s| format!("({})", s.join(" and ")))
        .collect::<Vec<_>>()
        .join(", ");
    r.report(
        state,
        "query:filter",
        &[
            ("filter", text),
            ("attributes", used.join(", ")),
            ("supported", supported),
        ],
    );
}

pub(crate) fn filter_empty_value(r: &Reporter<'_>, request: &RequestView<'_>, state: &mut State) {
    let Some((text, parsed)) = filter(request, state) else {
        return;
    };
    let empty: Vec<String> = parsed
        .terms()
        .iter()
        .filter(|t| matches!(t.value, Some(CompValue::String(s)) if s.trim().is_empty()))
        .map(|t| rule_name(t.attr))
        .collect();
    for attribute in empty {
        r.report(
            state,
            "query:filter",
            &[("filter", text.clone()), ("attribute", attribute)],
        );
    }
}

pub(crate) fn ignored_parameters(
    r: &Reporter<'_>,
    parameters: &[String],
    max_count: u64,
    request: &RequestView<'_>,
    state: &mut State,
) {
    let Some(q) = query(request) else { return };
    let given = [
        ("startIndex", &q.start_index),
        ("count", &q.count),
        ("attributes", &q.attributes),
        ("excludedAttributes", &q.excluded_attributes),
        ("sortBy", &q.sort_by),
        ("sortOrder", &q.sort_order),
    ];
    let mut hits = Vec::new();
    for (name, value) in given {
        let Some(value) = value else { continue };
        if name == "count" {
            // A count within AWS's page size is honoured; outside it AWS names no error,
            // and a page of at most `max_count` results is what the IdP gets.
            let effect = match value.trim().parse::<u64>() {
                Ok(n) if (1..=max_count).contains(&n) => continue,
                Ok(0) => "AWS's minimum is 1".to_owned(),
                Ok(_) => format!("AWS returns at most {max_count} results per page"),
                Err(_) => format!("not a whole number; AWS takes 1 to {max_count}"),
            };
            hits.push((name, value.clone(), effect));
        } else if name == "startIndex" && parameters.iter().any(|p| p == name) {
            hits.push((
                name,
                value.clone(),
                "AWS ignores startIndex; page with cursor instead: send `?cursor` (empty) for the first page, then `cursor=<nextCursor>` until a page has no nextCursor".to_owned(),
            ));
        } else if parameters.iter().any(|p| p.eq_ignore_ascii_case(name)) {
            hits.push((name, value.clone(), "AWS ignores this parameter".to_owned()));
        }
    }
    for (name, value, effect) in hits {
        r.report(
            state,
            format!("query:{name}"),
            &[
                ("parameter", name.to_owned()),
                ("value", value),
                ("effect", effect),
            ],
        );
    }
}

/// Whether `c` may be in a cursor: AWS's pattern `[-a-zA-Z0-9+=/:_]*`, plus the space a
/// raw `+` becomes when the query is decoded (an IdP that pastes `nextCursor` into the
/// URL unencoded sends `+` as is, and AWS is given the same bytes).
fn cursor_character(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-+=/:_ ".contains(c)
}

pub(crate) fn cursor_parameter(r: &Reporter<'_>, request: &RequestView<'_>, state: &mut State) {
    let Some(cursor) = query(request).and_then(|q| q.cursor.as_deref()) else {
        return;
    };
    let Some((at, c)) = cursor.char_indices().find(|&(_, c)| !cursor_character(c)) else {
        return;
    };
    r.report(
        state,
        "query:cursor",
        &[
            ("value", cursor.to_owned()),
            ("character", format!("U+{:04X}", c as u32)),
            ("position", (cursor[..at].chars().count() + 1).to_string()),
        ],
    );
}
