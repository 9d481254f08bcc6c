//! JSON inputs: a request object, an array of them, or JSON lines of request objects
//! and records.

use serde_json::value::RawValue;
use serde_json::Value;

use super::raw::is_token;
use super::{InputError, Inputs, OfflineRequest};
use crate::record::read::unreadable_line;
use crate::record::{check_version, json_message, Record};

pub(super) fn parse_json(bytes: &[u8], origin: &str, strict: bool) -> Result<Inputs, InputError> {
    let error = |line: Option<usize>, message: String| InputError {
        file: origin.to_owned(),
        line,
        message,
    };
    let whole = |requests| Inputs {
        requests,
        warnings: Vec::new(),
    };
    // Elements are kept as their raw text: a record's `json` bodies must be read back
    // from the very bytes written, which a parsed `Value` no longer has.
    match serde_json::from_slice::<&RawValue>(bytes) {
        Ok(all) if all.get().starts_with('[') => {
            let items: Vec<&RawValue> = serde_json::from_str(all.get())
                .map_err(|e| error(Some(e.line()), json_message(&e)))?;
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    json_input(item.get())
                        .map(|r| (format!("{origin}[{i}]"), r))
                        .map_err(|m| error(None, format!("element {i}: {m}")))
                })
                .collect::<Result<_, _>>()
                .map(whole)
        }
        Ok(all) => json_input(all.get())
            .map(|r| whole(vec![(origin.to_owned(), r)]))
            .map_err(|m| error(None, m)),
        Err(all) => {
            // Several documents: JSON lines, when the first line stands alone.
            let first_line_alone = bytes
                .split(|&b| b == b'\n')
                .find(|l| !l.iter().all(u8::is_ascii_whitespace))
                .is_some_and(|l| serde_json::from_slice::<&RawValue>(l).is_ok());
            if !first_line_alone {
                return Err(error(Some(all.line()), json_message(&all)));
            }
            json_lines(bytes, origin, strict)
        }
    }
}

/// JSON lines of records and request objects. A line that is not one is skipped with
/// a warning, worded as every capture reader words it
/// ([`crate::record::read::unreadable_line`]), or with `strict` is an error.
fn json_lines(bytes: &[u8], origin: &str, strict: bool) -> Result<Inputs, InputError> {
    let mut inputs = Inputs::default();
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let last = lines.len().saturating_sub(1);
    for (i, line) in lines.iter().enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let read = serde_json::from_slice::<&RawValue>(line)
            .map_err(|e| json_message(&e))
            .and_then(|text| json_input(text.get()));
        match read {
            Ok(request) => inputs
                .requests
                .push((format!("{origin}:{}", i + 1), request)),
            // A newer record version is not damage: it is refused whole.
            Err(problem) if problem.contains("not supported") => {
                return Err(InputError {
                    file: origin.to_owned(),
                    line: Some(i + 1),
                    message: problem,
                })
            }
            // An event (a guard trip or release) is no request: nothing to check.
            Err(_) if crate::record::Event::from_line(line).is_some() => {}
            Err(problem) => {
                let kept = inputs.requests.len();
                let warning = unreadable_line(origin, i + 1, i == last, &problem, kept, strict)
                    .map_err(|message| InputError {
                        file: origin.to_owned(),
                        line: Some(i + 1),
                        message,
                    })?;
                inputs.warnings.push(warning);
            }
        }
    }
    Ok(inputs)
}

/// A record (an object with `version` and `request`) or a request object, from the
/// text of one JSON value.
pub(super) fn json_input(text: &str) -> Result<OfflineRequest, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| json_message(&e))?;
    let Some(map) = value.as_object() else {
        return Err("expected a request object {\"method\", \"path\", …} or a record".into());
    };
    if map.contains_key("version") && map.contains_key("request") {
        let record: Record =
            serde_json::from_str(text).map_err(|e| format!("not a record: {e}"))?;
        check_version(record.version)?;
        return Ok(OfflineRequest::from(&record.request));
    }
    request_object(map)
}

const REQUEST_FIELDS: [&str; 5] = ["method", "path", "query", "headers", "body"];

fn request_object(map: &serde_json::Map<String, Value>) -> Result<OfflineRequest, String> {
    if let Some(unknown) = map.keys().find(|k| !REQUEST_FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "unknown field `{unknown}`; a request has {}",
            REQUEST_FIELDS.join(", ")
        ));
    }
    let method = match map.get("method") {
        Some(Value::String(m)) if is_token(m) => m.clone(),
        Some(Value::String(m)) => return Err(format!("`method` `{m}` is not an HTTP method")),
        Some(_) => return Err("`method` must be a string".into()),
        None => return Err("`method` is missing".into()),
    };
    let target = match map.get("path") {
        Some(Value::String(p)) if p.starts_with('/') => p.clone(),
        Some(Value::String(p)) => {
            return Err(format!(
                "`path` `{p}` must start with `/` (e.g. /scim/v2/Users)"
            ))
        }
        Some(_) => return Err("`path` must be a string".into()),
        None => return Err("`path` is missing".into()),
    };
    let (path, path_query) = match target.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (target, None),
    };
    let query = match map.get("query") {
        None | Some(Value::Null) => path_query,
        Some(Value::String(q)) if path_query.is_none() => {
            Some(q.strip_prefix('?').unwrap_or(q).to_owned())
        }
        Some(Value::String(_)) => {
            return Err("the query is given twice: in `path` after `?` and in `query`".into())
        }
        Some(_) => return Err("`query` must be a string (the raw query string)".into()),
    };
    let headers = match map.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(h) => headers_from_json(h)?,
    };
    let body = match map.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) => text.clone().into_bytes(),
        Some(other) => serde_json::to_vec(other).map_err(|e| e.to_string())?,
    };
    Ok(OfflineRequest {
        method,
        path,
        query,
        headers,
        body,
    })
}

fn headers_from_json(value: &Value) -> Result<Vec<(String, String)>, String> {
    let text = |v: &Value, what: &str| {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("header {what} must be a string"))
    };
    match value {
        Value::Object(map) => {
            let mut out = Vec::new();
            for (name, v) in map {
                match v {
                    Value::Array(values) => {
                        for v in values {
                            out.push((name.clone(), text(v, "value")?));
                        }
                    }
                    v => out.push((name.clone(), text(v, "value")?)),
                }
            }
            Ok(out)
        }
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Array(pair) if pair.len() == 2 => {
                    Ok((text(&pair[0], "name")?, text(&pair[1], "value")?))
                }
                Value::Object(o) if o.len() == 2 => match (o.get("name"), o.get("value")) {
                    (Some(n), Some(v)) => Ok((text(n, "name")?, text(v, "value")?)),
                    _ => Err("a header object is {\"name\": …, \"value\": …}".to_owned()),
                },
                _ => Err("each header is [name, value] or {\"name\", \"value\"}".to_owned()),
            })
            .collect(),
        _ => Err("`headers` must be an object or a list of [name, value] pairs".into()),
    }
}
