use super::*;
use crate::record::{Body, Record, RecordedResponse, Timings, RECORD_VERSION};
use std::path::Path;

fn rules() -> RuleSet {
    RuleSet::embedded().unwrap()
}

fn parse(text: &str) -> Vec<(String, OfflineRequest)> {
    parse_inputs(text.as_bytes(), "f").unwrap()
}

fn parse_err(text: &[u8]) -> InputError {
    parse_inputs(text, "f").unwrap_err()
}

const GOOD_USER: &str = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bjensen","displayName":"Babs","name":{"givenName":"Barbara","familyName":"Jensen"},"emails":[{"value":"b@example.com","type":"work","primary":true}],"active":true}"#;
const NO_NAME_USER: &str = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bjensen","displayName":"Babs","emails":[{"value":"b@example.com","type":"work","primary":true}]}"#;
const TWO_EMAILS_USER: &str = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bjensen","displayName":"Babs","name":{"givenName":"Barbara","familyName":"Jensen"},"emails":[{"value":"b@example.com","type":"work","primary":true},{"value":"c@example.com","type":"home"}]}"#;

fn request(method: &str, target: &str, body: &str) -> OfflineRequest {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    OfflineRequest {
        method: method.into(),
        path,
        query,
        headers: Vec::new(),
        body: body.as_bytes().to_vec(),
    }
}

fn record_line(i: usize, body: &str) -> String {
    let record = Record {
        version: RECORD_VERSION,
        id: format!("{i:032x}"),
        time: "2024-05-01T00:00:00.000000Z".into(),
        replica: None,
        tenant: None,
        operation: "CreateUser".into(),
        mode: "enforce".into(),
        verdict: "forwarded".into(),
        request: RecordedRequest {
            method: "POST".into(),
            path: "/t-1/scim/v2/Users".into(),
            query: None,
            headers: vec![("authorization".into(), "Bearer [REDACTED]".into())],
            body: Body::from(body),
        },
        forwarded: Vec::new(),
        response: Some(RecordedResponse {
            status: 201,
            headers: Vec::new(),
            body: Body::default(),
        }),
        findings: Vec::new(),
        error: None,
        timings: Timings::default(),
    };
    serde_json::to_string(&record).unwrap()
}

// --- reading ---

#[test]
fn reads_a_capture_as_json_lines() {
    let text = format!(
        "{}\n\n{}\n",
        record_line(0, GOOD_USER),
        record_line(1, NO_NAME_USER)
    );
    let inputs = parse(&text);
    assert_eq!(inputs.len(), 2);
    assert_eq!(inputs[0].0, "f:1");
    assert_eq!(inputs[1].0, "f:3");
    assert_eq!(inputs[1].1.body, NO_NAME_USER.as_bytes());
    assert_eq!(inputs[0].1.path, "/t-1/scim/v2/Users");
    // A capture of a single record is one JSON document.
    assert_eq!(parse(&record_line(0, GOOD_USER)).len(), 1);
}

#[test]
fn reads_request_files_in_every_shape() {
    let one = parse(&example_request().to_string());
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].0, "f");
    let r = &one[0].1;
    assert_eq!(
        (r.method.as_str(), r.path.as_str(), r.query.as_deref()),
        ("POST", "/scim/v2/Users", None)
    );
    assert_eq!(
        r.headers,
        vec![(
            "Content-Type".to_owned(),
            "application/scim+json".to_owned()
        )]
    );
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["userName"], "bjensen@example.com");

    let list = parse(
        r#"[
          {"method": "GET", "path": "/scim/v2/Users", "query": "?filter=userName%20eq%20%22x%22"},
          {"method": "GET", "path": "/scim/v2/Users?count=5", "headers": [["Accept", "application/scim+json"], {"name": "X-A", "value": "1"}]},
          {"method": "POST", "path": "/scim/v2/Users", "body": "{not json"},
          {"method": "DELETE", "path": "/scim/v2/Users/1", "body": null, "headers": {"X-Multi": ["a", "b"]}}
        ]"#,
    );
    assert_eq!(list.len(), 4);
    assert_eq!(list[0].0, "f[0]");
    assert_eq!(
        list[0].1.query.as_deref(),
        Some("filter=userName%20eq%20%22x%22")
    );
    assert_eq!(list[1].1.query.as_deref(), Some("count=5"));
    assert_eq!(list[1].1.headers.len(), 2);
    assert_eq!(list[2].1.body, b"{not json");
    assert!(list[3].1.body.is_empty());
    assert_eq!(list[3].1.headers.len(), 2);

    let lines = parse(
        "{\"method\":\"GET\",\"path\":\"/Users\"}\n{\"method\":\"GET\",\"path\":\"/Groups\"}\n",
    );
    assert_eq!(
        lines.iter().map(|l| l.0.as_str()).collect::<Vec<_>>(),
        ["f:1", "f:2"]
    );
}

#[test]
fn json_errors_say_what_and_where() {
    let cases: [(&str, Option<usize>, &str); 10] = [
        (r#"{"method":"GET"}"#, None, "`path` is missing"),
        (r#"{"path":"/Users"}"#, None, "`method` is missing"),
        (
            r#"{"method":"GET","path":"Users"}"#,
            None,
            "must start with `/`",
        ),
        (
            r#"{"method":"G T","path":"/Users"}"#,
            None,
            "not an HTTP method",
        ),
        (
            r#"{"method":"GET","path":"/Users","heders":{}}"#,
            None,
            "unknown field `heders`",
        ),
        (
            r#"{"method":"GET","path":"/U?a=1","query":"b=2"}"#,
            None,
            "given twice",
        ),
        (
            r#"{"method":"GET","path":"/U","headers":"x"}"#,
            None,
            "`headers` must be",
        ),
        (r#"[1]"#, None, "element 0"),
        (
            "{\"method\":\"GET\",\n\"path\": }",
            Some(2),
            "expected value",
        ),
        (
            "{\"method\":\"GET\",\"path\":\"/U\"}\n{\"method\":\"GET\"}\n",
            Some(2),
            "`path` is missing",
        ),
    ];
    for (text, line, needle) in cases {
        let e = parse_err(text.as_bytes());
        assert_eq!(e.line, line, "{text}: {e}");
        assert!(e.message.contains(needle), "{text}: {e}");
    }
    let e = parse_err(
        record_line(0, "{}")
            .replace("\"version\":2", "\"version\":7")
            .as_bytes(),
    );
    assert!(e.message.contains("version 7"), "{e}");
    let e = parse_err(b"  \n ");
    assert_eq!(e.to_string(), "f: the file is empty");
    assert_eq!(parse_err(b"[]").message, "the file holds no request");
}

#[test]
fn reads_raw_http_with_crlf_lf_chunks_and_several_requests() {
    let crlf = format!(
        "POST /t-1/scim/v2/Users HTTP/1.1\r\nHost: x\r\nContent-Type: application/scim+json\r\nContent-Length: {}\r\n\r\n{GOOD_USER}",
        GOOD_USER.len()
    );
    let one = parse(&crlf);
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].0, "f:1");
    assert_eq!(one[0].1.body, GOOD_USER.as_bytes());
    assert_eq!(
        one[0].1.headers[1],
        ("Content-Type".into(), "application/scim+json".into())
    );

    // LF, no Content-Length: the rest of the file less its final line break.
    let lf =
        format!("\nPOST /scim/v2/Users HTTP/1.1\nContent-Type: application/json\n\n{GOOD_USER}\n");
    let one = parse(&lf);
    assert_eq!(one[0].0, "f:2");
    assert_eq!(one[0].1.body, GOOD_USER.as_bytes());

    // Several: a GET without a body, then lengths, then chunks, then an absolute URL.
    let several = "GET /scim/v2/Users?filter=userName%20eq%20%22x%22 HTTP/1.1\nHost: x\n\n\
         PATCH /scim/v2/Groups/g HTTP/1.1\nContent-Length: 2\n\n{}\n\
         POST /scim/v2/Users HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\n{\"a\":\r\n3\r\n 1}\r\n0\r\nX-Trailer: y\r\n\r\n\
         GET https://scim.us-east-1.amazonaws.com/t-1/scim/v2/Groups?count=1#frag HTTP/1.1\n\n\
         DELETE http://h?x=1\n";
    let all = parse(several);
    assert_eq!(all.len(), 5, "{all:?}");
    assert_eq!(
        all[0].1.query.as_deref(),
        Some("filter=userName%20eq%20%22x%22")
    );
    assert!(all[0].1.body.is_empty());
    assert_eq!(all[1].0, "f:4");
    assert_eq!(all[1].1.body, b"{}");
    assert_eq!(all[2].1.body, br#"{"a": 1}"#);
    assert_eq!(all[3].1.path, "/t-1/scim/v2/Groups");
    assert_eq!(all[3].1.query.as_deref(), Some("count=1"));
    assert_eq!(
        (all[4].1.path.as_str(), all[4].1.query.as_deref()),
        ("/", Some("x=1"))
    );
    assert_eq!(all[4].0, "f:20");
}

#[test]
fn raw_errors_say_what_and_where() {
    let cases: [(&[u8], usize, &str); 10] = [
        (b"hello big world\n", 1, "not a request line"),
        (b"GET Users HTTP/1.1\n\n", 1, "neither a path"),
        (b"G@T /Users HTTP/1.1\n\n", 1, "not an HTTP method"),
        (b"GET /Users HTTP/1.1\nHost x\n\n", 2, "not a header"),
        (b"GET /Users HTTP/1.1\nA: b\n  folded\n\n", 3, "folded"),
        (
            b"POST /Users HTTP/1.1\nContent-Length: 50\n\n{}",
            4,
            "only 2 follow",
        ),
        (
            b"POST /Users HTTP/1.1\nContent-Length: x\n\n{}",
            4,
            "not one number",
        ),
        (
            b"POST /Users HTTP/1.1\nContent-Length: 2\nContent-Length: 3\n\n{}",
            5,
            "not one number",
        ),
        (
            b"POST /Users HTTP/1.1\nTransfer-Encoding: chunked\n\nzz\n",
            4,
            "not a chunk size",
        ),
        (
            b"POST /Users HTTP/1.1\nTransfer-Encoding: gzip\n\n",
            4,
            "not supported",
        ),
    ];
    for (text, line, needle) in cases {
        let e = parse_err(text);
        assert_eq!(e.line, Some(line), "{e}");
        assert!(e.message.contains(needle), "{e}");
        assert!(e.to_string().starts_with(&format!("f:{line}: ")), "{e}");
    }
    for text in [
        &b"POST /U HTTP/1.1\nTransfer-Encoding: chunked\n\n5\nab"[..],
        b"POST /U HTTP/1.1\nTransfer-Encoding: chunked\n\n2\nabc\n0\n\n",
        b"POST /U HTTP/1.1\nTransfer-Encoding: chunked\n\n",
        b"POST /U HTTP/1.1\nContent-Length: 1\nTransfer-Encoding: chunked\n\nx",
        b"GET /U HTTP/1.1\nX: \xff\n\n",
        b"\xff\xfe /U\n",
    ] {
        assert!(
            parse_inputs(text, "f").is_err(),
            "{}",
            String::from_utf8_lossy(text)
        );
    }
}

#[test]
fn unreadable_files_are_input_errors() {
    let e = read_inputs(Path::new("/nonexistent/requests.json"), false).unwrap_err();
    assert_eq!(e.file, "/nonexistent/requests.json");
    assert!(e.message.starts_with("cannot read the file"));
}

// --- checking ---

#[test]
fn exit_codes_follow_the_worst_verdict() {
    let rules = rules();
    let clean = [("a".to_owned(), request("POST", "/scim/v2/Users", GOOD_USER))];
    let rewritten = [(
        "b".to_owned(),
        request("POST", "/scim/v2/Users", TWO_EMAILS_USER),
    )];
    let rejected = [(
        "c".to_owned(),
        request("POST", "/scim/v2/Users", NO_NAME_USER),
    )];
    assert_eq!(check(&rules, &clean, Format::Text).1, EXIT_CLEAN);
    assert_eq!(check(&rules, &rewritten, Format::Text).1, EXIT_CLEAN);
    assert_eq!(check(&rules, &rejected, Format::Text).1, EXIT_REJECTED);
    let mixed: Vec<_> = clean
        .iter()
        .chain(&rewritten)
        .chain(&rejected)
        .cloned()
        .collect();
    assert_eq!(check(&rules, &mixed, Format::Json).1, EXIT_REJECTED);
    assert_eq!(check(&rules, &[], Format::Text).1, EXIT_CLEAN);
    // A GET with a broken filter is judged from its query as on the wire.
    let bad_filter = [(
        "d".to_owned(),
        request("GET", "/scim/v2/Users?filter=userName%20eq", ""),
    )];
    let (text, code) = check(&rules, &bad_filter, Format::Text);
    assert_eq!(code, EXIT_REJECTED, "{text}");
}

#[test]
fn text_output_explains_each_request() {
    let rules = rules();
    let inputs = [
        (
            "ok.json".to_owned(),
            request("POST", "/scim/v2/Users", GOOD_USER),
        ),
        (
            "two.json".to_owned(),
            request("POST", "/scim/v2/Users", TWO_EMAILS_USER),
        ),
        (
            "bad.json".to_owned(),
            request("POST", "/scim/v2/Users", NO_NAME_USER),
        ),
    ];
    let (text, _) = check(&rules, &inputs, Format::Text);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "ok.json: POST /scim/v2/Users → CreateUser: forwarded"
    );
    assert!(
        text.contains("two.json: POST /scim/v2/Users → CreateUser: rewritten"),
        "{text}"
    );
    assert!(text.contains("        fix: "), "{text}");
    assert!(
        text.contains("bad.json: POST /scim/v2/Users → CreateUser: rejected"),
        "{text}"
    );
    assert!(text.contains("    reject [user.required] at "), "{text}");
    assert!(
        text.contains("        source: CreateUser › Constraints"),
        "{text}"
    );
    assert_eq!(
        *lines.last().unwrap(),
        "3 request(s) checked: 1 forwarded, 1 rewritten, 1 rejected"
    );
}

#[test]
fn json_output_has_the_same_data() {
    let rules = rules();
    let inputs = [
        (
            "two".to_owned(),
            request("POST", "/scim/v2/Users", TWO_EMAILS_USER),
        ),
        (
            "bad".to_owned(),
            request("POST", "/scim/v2/Users?x=1", NO_NAME_USER),
        ),
    ];
    let (text, code) = check(&rules, &inputs, Format::Json);
    assert_eq!(code, EXIT_REJECTED);
    let v: Value = serde_json::from_str(&text).unwrap();
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["verdict"], "rewritten");
    assert_eq!(items[0]["operation"], "CreateUser");
    assert!(items[0]["rewritten"]["emails"].as_array().is_some());
    assert!(items[0]["findings"][0]["fix"]["before"].is_string());
    assert_eq!(items[1]["verdict"], "rejected");
    assert_eq!(items[1]["query"], "x=1");
    assert_eq!(items[1]["rejection"]["status"], "400");
    assert!(items[1]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["rule"] == "user.required" && f["action"] == "reject"));
    assert!(items[1].get("rewritten").is_none());
}

#[test]
fn check_files_reports_unreadable_inputs_with_code_2_and_checks_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.http");
    std::fs::write(
        &good,
        format!(
            "POST /scim/v2/Users HTTP/1.1\nContent-Length: {}\n\n{GOOD_USER}",
            GOOD_USER.len()
        ),
    )
    .unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"method\": \"GET\",\n \"path\": 3}").unwrap();
    let capture = dir.path().join("capture.jsonl");
    std::fs::write(
        &capture,
        format!(
            "{}\n{}\n",
            record_line(0, GOOD_USER),
            record_line(1, NO_NAME_USER)
        ),
    )
    .unwrap();
    let rules = rules();

    let run = check_files(&rules, std::slice::from_ref(&good), Format::Text, false);
    assert_eq!((run.code, run.stderr.as_str()), (EXIT_CLEAN, ""));
    assert!(run.stdout.contains("good.http:1: POST"), "{}", run.stdout);

    let run = check_files(
        &rules,
        &[good.clone(), capture.clone()],
        Format::Text,
        false,
    );
    assert_eq!(run.code, EXIT_REJECTED);
    assert!(
        run.stdout
            .contains("capture.jsonl:2: POST /t-1/scim/v2/Users → CreateUser: rejected"),
        "{}",
        run.stdout
    );

    let missing = dir.path().join("missing.json");
    let run = check_files(
        &rules,
        &[good, bad.clone(), missing, capture],
        Format::Json,
        false,
    );
    assert_eq!(run.code, EXIT_UNREADABLE);
    assert!(
        run.stderr
            .contains(&format!("{}: `path` must be a string", bad.display())),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("missing.json: cannot read the file"),
        "{}",
        run.stderr
    );
    let checked: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        checked.as_array().unwrap().len(),
        3,
        "the readable files are still checked"
    );
}

#[test]
fn a_capture_written_by_the_recorder_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.jsonl");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let recorder =
            crate::record::Recorder::open(&path, crate::record::RecordOptions::default()).unwrap();
        for (i, body) in [GOOD_USER, TWO_EMAILS_USER, NO_NAME_USER]
            .iter()
            .enumerate()
        {
            let line = record_line(i, body);
            recorder.record(serde_json::from_str(&line).unwrap());
        }
        recorder.close().await;
    });
    let run = check_files(&rules(), &[path], Format::Text, false);
    assert_eq!(run.code, EXIT_REJECTED, "{}", run.stdout);
    assert!(
        run.stdout
            .ends_with("3 request(s) checked: 1 forwarded, 1 rewritten, 1 rejected\n"),
        "{}",
        run.stdout
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

    #[test]
    fn parsing_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        let _ = parse_inputs(&bytes, "fuzz");
    }

    #[test]
    fn raw_http_like_input_never_panics(
        text in "(GET|POST|PATCH) (/[a-zA-Z?=%&]{0,10}|https?://[a-z/?]{0,8}) HTTP/1.1\r?\n([A-Za-z-]{1,12}: ?[0-9a-z ;]{0,6}\r?\n){0,4}\r?\n[0-9a-f{}\r\n;\"]{0,40}"
    ) {
        let _ = parse_inputs(text.as_bytes(), "fuzz");
        let _ = parse_inputs(format!("{text}\nTransfer-Encoding: chunked\n\n").as_bytes(), "fuzz");
    }

    #[test]
    fn checking_any_request_never_panics(
        method in "GET|POST|PUT|PATCH|DELETE",
        target in "/[a-zA-Z0-9/?=%&.\"]{0,30}",
        body in "\\PC{0,60}"
    ) {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (target.clone(), None),
        };
        let request = OfflineRequest { method, path, query, headers: Vec::new(), body: body.into_bytes() };
        let (_, code) = check(&rules(), &[("p".into(), request)], Format::Json);
        proptest::prop_assert!(code == EXIT_CLEAN || code == EXIT_REJECTED);
    }
}

#[test]
fn a_capture_with_a_cut_last_line_or_a_corrupt_line_is_checked_with_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.jsonl");
    let whole = record_line(0, NO_NAME_USER);
    std::fs::write(
        &cut,
        format!(
            "{whole}\n{}\n{}",
            &whole[..25],
            &record_line(1, GOOD_USER)[..60]
        ),
    )
    .unwrap();
    let run = check_files(&rules(), std::slice::from_ref(&cut), Format::Text, false);
    assert_eq!(
        run.code, EXIT_REJECTED,
        "as without the bad lines: {}",
        run.stderr
    );
    assert!(
        run.stdout.contains("1 request(s) checked"),
        "{}",
        run.stdout
    );
    let warnings: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(warnings.len(), 2, "{}", run.stderr);
    assert!(
        warnings[0].contains("cut.jsonl:2: skipped"),
        "{}",
        run.stderr
    );
    assert!(
        warnings[1].contains("cut.jsonl:3: the last line is cut"),
        "{}",
        run.stderr
    );
    let strict = check_files(&rules(), &[cut], Format::Text, true);
    assert_eq!(strict.code, EXIT_UNREADABLE, "{}", strict.stderr);
    assert!(strict.stderr.contains("cut.jsonl:2:"), "{}", strict.stderr);
}

proptest::proptest! {
    #[test]
    fn reading_any_bytes_never_panics(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        head in "(GET|POST|PATCH) /[a-z?=%]{0,10}( HTTP/1.1)?\r?\n([A-Za-z-]{1,8}: ?[ -~]{0,8}\r?\n){0,3}",
    ) {
        let _ = super::parse(&bytes, "fuzz", false);
        let _ = super::parse(&bytes, "fuzz", true);
        let mut raw = head.into_bytes();
        raw.extend_from_slice(&bytes);
        let _ = super::parse(&raw, "fuzz", false);
    }
}
