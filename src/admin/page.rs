//! The page of the live view and of the report: one HTML skeleton, one stylesheet, one
//! script, embedded in the binary. The live view links the stylesheet and script from
//! the admin listener; the report inlines them and its data, so it is one file that
//! fetches nothing.

/// The skeleton; `{{TITLE}}`, `{{MODE}}`, `{{HEAD}}` and `{{TAIL}}` are filled in here
/// with text of scimguard's own, never with exchange data.
pub const HTML: &str = include_str!("assets/view.html");
pub const CSS: &str = include_str!("assets/view.css");
pub const JS: &str = include_str!("assets/view.js");

/// The live page may load only its own script, stylesheet and event stream.
pub const LIVE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The report may run only what it carries inline and load nothing at all.
pub const REPORT_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

fn fill(title: &str, mode: &str, head: &str, tail: &str) -> String {
    HTML.replace("{{TITLE}}", title)
        .replace("{{MODE}}", mode)
        .replace("{{HEAD}}", head)
        .replace("{{TAIL}}", tail)
}

/// The live view's page.
pub fn live_page() -> String {
    fill(
        "scimguard — live view",
        "live",
        r#"<link rel="stylesheet" href="/view.css">"#,
        r#"<script src="/view.js"></script>"#,
    )
}

/// The report: the page with its stylesheet, script and `data` (JSON) inline.
pub fn report_page(title: &str, data: &serde_json::Value) -> String {
    let head = format!(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"{REPORT_POLICY}\">\n<style>\n{CSS}</style>"
    );
    let tail = format!(
        "<script type=\"application/json\" id=\"report-data\">{}</script>\n<script>\n{JS}</script>",
        script_json(data)
    );
    fill(&escape_text(title), "report", &head, &tail)
}

/// JSON safe inside `<script>`: `<`, `>` and `&` (which could close the element or
/// open a comment) and the two line separators JavaScript once refused, all as `\u`
/// escapes, which leave the JSON's meaning unchanged (they occur only inside strings).
pub fn script_json(value: &serde_json::Value) -> String {
    let json = serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned());
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Text for an HTML element's content or a quoted attribute.
fn escape_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The login page: a form for the token, and why it is shown.
pub fn login_page(why: Option<&str>) -> String {
    let why = why.map(escape_text).unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="color-scheme" content="light dark">
<link rel="stylesheet" href="/view.css"><title>scimguard — log in</title></head>
<body><form class="login" method="post" action="/login">
<h1>scimguard admin</h1><p>{why}</p>
<p class="muted">Open the one-time link scimguard printed at start, or type the admin token.</p>
<label>admin token <input type="password" name="token" autocomplete="current-password" required></label>
<button type="submit">log in</button></form></body></html>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_json_cannot_close_its_element_and_still_parses() {
        let value = serde_json::json!({"name": "</script><img src=x onerror=alert(1)>&\u{2028}"});
        let text = script_json(&value);
        assert!(
            !text.contains('<') && !text.contains('>') && !text.contains('&'),
            "{text}"
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            value
        );
    }

    #[test]
    fn the_assets_never_hand_data_to_the_html_parser() {
        // Every value reaches the page as text; the script says so and keeps it so.
        for forbidden in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!JS.contains(forbidden), "view.js uses {forbidden}");
        }
        assert!(!JS.contains("</script"), "the report inlines view.js");
        assert!(!CSS.contains("</style"), "the report inlines view.css");
        let without_namespace = JS.replace("http://www.w3.org/2000/svg", "");
        for fetch in ["http://", "https://", "XMLHttpRequest", "WebSocket"] {
            assert!(
                !without_namespace.contains(fetch),
                "view.js reaches out with {fetch}"
            );
        }
        // The live view reads and releases the guard on its own listener, by relative
        // paths (and the live page's policy allows only 'self'); nothing else.
        for (at, _) in JS.match_indices("fetch(") {
            assert!(
                JS[at..].starts_with("fetch('/guard"),
                "view.js fetches {}",
                &JS[at..at + 40]
            );
        }
    }

    #[test]
    fn the_report_page_inlines_everything_and_escapes_its_title() {
        let page = report_page("a <b> report", &serde_json::json!({"entries": []}));
        assert!(page.contains("a &lt;b&gt; report"));
        assert!(
            !page.contains("src=\"/") && !page.contains("href=\"/"),
            "nothing to fetch"
        );
        assert!(page.contains(REPORT_POLICY));
        assert!(!page.contains("{{"), "every placeholder is filled");
    }
}
