//! Token isolation through a recording upstream: the IdP's token is checked before the
//! body is read, the upstream gets the AWS token, and neither token appears in the log,
//! the capture or the explanation log.

use crate::support::*;

const CLIENT_TOKEN: &str = "idp-facing-token-7c1d2e9f40";
const AWS_TOKEN: &str = "aws-scim-token-55e0a1b2c3d4";

#[tokio::test]
async fn client_tokens_are_checked_first_and_the_aws_token_goes_upstream_and_nowhere_else() {
    let dir = tempfile::tempdir().unwrap();
    let client_file = dir.path().join("client-tokens");
    let upstream_file = dir.path().join("aws-token");
    std::fs::write(&client_file, format!("# the IdP's token\n{CLIENT_TOKEN}\n")).unwrap();
    std::fs::write(&upstream_file, format!("{AWS_TOKEN}\n")).unwrap();
    let capture = dir.path().join("capture.jsonl");
    let explain = dir.path().join("explain.jsonl");
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = RunningBinary::start(&[
        "run",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream.url(),
        "--client-token-file",
        client_file.to_str().unwrap(),
        "--upstream-token-file",
        upstream_file.to_str().unwrap(),
        "--record",
        capture.to_str().unwrap(),
        "--explain-log",
        explain.to_str().unwrap(),
    ]);
    let addr = listening_addr(&proxy.stdout_line("scimguard listening on").await, "http");

    // A wrong token announcing a 100 kB body, of which only 11 bytes are ever sent: the
    // 401 arrives anyway, so the body was never waited for.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let answer = raw_exchange(
        &mut tcp,
        &format!(
            "POST /scim/v2/Users HTTP/1.1\r\nHost: scim\r\nAuthorization: Bearer {AWS_TOKEN}\r\nContent-Type: application/scim+json\r\nContent-Length: 100000\r\n\r\n{{\"userName\""
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let (status, detail) = scim_error(body.as_bytes());
    assert_eq!(status, "401");
    assert!(detail.contains("--client-token-file"), "{detail}");

    // No token at all: 401 too.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let answer = raw_exchange(
        &mut tcp,
        "GET /scim/v2/Users HTTP/1.1\r\nHost: scim\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        upstream.seen().is_empty(),
        "refused requests never reach the upstream"
    );

    // The right token: the upstream sees the AWS token in its place.
    let user = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"jdoe","displayName":"J Doe","name":{"givenName":"J","familyName":"Doe"}}"#;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let answer = raw_exchange(
        &mut tcp,
        &format!(
            "POST /scim/v2/Users HTTP/1.1\r\nHost: scim\r\nAuthorization: Bearer {CLIENT_TOKEN}\r\nContent-Type: application/scim+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{user}",
            user.len()
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].headers["authorization"],
        format!("Bearer {AWS_TOKEN}").as_str()
    );
    assert_eq!(seen[0].body, user.as_bytes());

    let stderr = proxy.stop().await;
    let capture = std::fs::read_to_string(&capture).unwrap();
    let explain = std::fs::read_to_string(&explain).unwrap();
    assert!(
        capture.contains("jdoe"),
        "the capture holds the exchange: {capture}"
    );
    assert_eq!(explain.lines().count(), 3, "{explain}");
    for (place, text) in [
        ("stderr", &stderr),
        ("capture", &capture),
        ("explain-log", &explain),
    ] {
        for token in [CLIENT_TOKEN, AWS_TOKEN] {
            assert!(!text.contains(token), "{token} in {place}: {text}");
        }
    }
}

#[tokio::test]
async fn in_front_of_the_embedded_emulator_the_isolated_token_is_the_emulators_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let client_file = dir.path().join("client-tokens");
    let upstream_file = dir.path().join("aws-token");
    std::fs::write(&client_file, format!("{CLIENT_TOKEN}\n")).unwrap();
    std::fs::write(&upstream_file, format!("{AWS_TOKEN}\n")).unwrap();
    let proxy = RunningBinary::start(&[
        "run",
        "--listen",
        "127.0.0.1:0",
        "--client-token-file",
        client_file.to_str().unwrap(),
        "--upstream-token-file",
        upstream_file.to_str().unwrap(),
    ]);
    let endpoint = proxy.stdout_line("SCIM endpoint:").await;
    let endpoint = endpoint.split_whitespace().last().unwrap().to_owned();
    let token_line = proxy.stdout_line("Bearer token:").await;
    assert!(token_line.contains("--client-token-file"), "{token_line}");
    let addr = listening_addr(&proxy.stdout_line("scimguard listening on").await, "http");
    let path = endpoint.trim_start_matches(&format!("http://{addr}"));

    let user =
        r#"{"userName":"jdoe","displayName":"J Doe","name":{"givenName":"J","familyName":"Doe"}}"#;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let answer = raw_exchange(
        &mut tcp,
        &format!(
            "POST {path}/Users HTTP/1.1\r\nHost: scim\r\nAuthorization: Bearer {CLIENT_TOKEN}\r\nContent-Type: application/scim+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{user}",
            user.len()
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let stdout = proxy.stdout.lock().unwrap().join("\n");
    let stderr = proxy.stop().await;
    for text in [&stdout, &stderr] {
        assert!(
            !text.contains(AWS_TOKEN) && !text.contains(CLIENT_TOKEN),
            "{text}"
        );
    }
}
