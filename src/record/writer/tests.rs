use super::*;
use crate::record::read::read_capture;
use crate::record::tests::sample;
use crate::record::{read_capture_all, RecordedRequest};
use http::HeaderMap;
use serde_json::Value;

const TOKEN: &str = "SECRET-TOKEN-3f9a1c";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn mixed_session() -> Vec<Record> {
    let mut records = Vec::new();
    let mut r = sample(
        0,
        br#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"]}"#,
        201,
    );
    r.request
        .headers
        .push(("authorization".into(), format!("Bearer {TOKEN}")));
    records.push(r);
    let mut r = sample(1, br#"{"userName":""}"#, 400);
    r.verdict = "rejected".into();
    r.timings.upstream_us = None;
    r.findings = vec![
        serde_json::json!({"rule":"user.required","action":"reject","location":"/userName","message":"userName is required","source":"guide"}),
    ];
    records.push(r);
    let mut r = sample(2, br#"{"Operations":[]}"#, 204);
    r.operation = "PatchGroup".into();
    r.verdict = "rewritten".into();
    r.forwarded = vec![
        RecordedRequest::new(
            "PATCH",
            "/t-1/scim/v2/Groups/g",
            &HeaderMap::new(),
            br#"{"Operations":[1]}"#,
        ),
        RecordedRequest::new(
            "PATCH",
            "/t-1/scim/v2/Groups/g",
            &HeaderMap::new(),
            br#"{"Operations":[2]}"#,
        ),
    ];
    records.push(r);
    let mut r = sample(3, &[0xde, 0xad, 0xbe, 0xef], 502);
    r.verdict = "error".into();
    r.error = Some("could not connect to the upstream".into());
    r.request.query = Some("filter=userName%20eq%20%22x%22".into());
    records.push(r);
    let mut r = sample(4, b"", 0);
    r.response = None;
    r.tenant = None;
    r.mode = "observe".into();
    r.request.method = "GET".into();
    records.push(r);
    records
}

#[test]
fn a_mixed_session_reads_back_whole_with_mode_0600_and_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.jsonl");
    let session = mixed_session();
    // The token everywhere a caller could put it, bypassing the header redaction.
    let mut leaky = sample(
        5,
        format!(r#"{{"userName":"u","password":"{TOKEN}"}}"#).as_bytes(),
        201,
    );
    leaky.request.query = Some(format!("access_token={TOKEN}&count=1"));
    leaky.request.headers.extend([
        ("Authorization".to_owned(), format!("Bearer {TOKEN}")),
        ("cookie".to_owned(), format!("s={TOKEN}")),
        ("x-api-key".to_owned(), TOKEN.to_owned()),
    ]);
    leaky.forwarded.push(leaky.request.clone());
    let response = leaky.response.as_mut().unwrap();
    response
        .headers
        .push(("set-cookie".to_owned(), format!("s={TOKEN}")));
    leaky.findings = vec![serde_json::json!({"message": format!("removed it (\"{TOKEN}\")")})];
    leaky.error = Some(format!("password {TOKEN} refused"));
    runtime().block_on(async {
        let options = RecordOptions {
            replica: Some("replica-a".into()),
            ..RecordOptions::default()
        };
        let recorder = Recorder::open(&path, options).unwrap();
        for r in &session {
            recorder.record(r.clone());
        }
        recorder.record(leaky);
        recorder.close().await;
        assert_eq!(recorder.dropped(), 0);
    });
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        !bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
        "the token reached the file: {}",
        String::from_utf8_lossy(&bytes)
    );
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);
    let mut back = read_capture(&path).unwrap();
    assert_eq!(back.len(), session.len() + 1);
    let leaky = back.pop().unwrap();
    assert_eq!(
        leaky.request.query.as_deref(),
        Some("access_token=%5BREDACTED%5D&count=1")
    );
    assert_eq!(leaky.request.headers[1].1, "Bearer [REDACTED]");
    assert_eq!(leaky.error.as_deref(), Some("password [REDACTED] refused"));
    // Identical but for the redacted Authorization header and the replica's name.
    let mut expected = session.clone();
    expected[0].request.headers.last_mut().unwrap().1 = "Bearer [REDACTED]".into();
    for r in &mut expected {
        r.replica = Some("replica-a".into());
    }
    assert_eq!(back, expected);
    assert_eq!(back[3].request.body.as_bytes(), [0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(back[2].forwarded.len(), 2);
    assert!(String::from_utf8(bytes)
        .unwrap()
        .lines()
        .all(|l| l.starts_with("{\"version\":2,")));
}

#[test]
fn each_record_is_in_the_file_once_flushed_while_the_writer_lives() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.jsonl");
    runtime().block_on(async {
        let recorder = Recorder::open(&path, RecordOptions::default()).unwrap();
        for i in 0..20 {
            recorder.record(sample(i, br#"{"a":1}"#, 201));
            recorder.flush().await;
            let back = read_capture(&path).unwrap();
            assert_eq!(back.len(), i + 1);
            assert_eq!(back[i].id, format!("{i:032x}"));
        }
        recorder.close().await;
    });
}

#[test]
fn dropping_every_handle_still_writes_all_completed_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dropped.jsonl");
    const N: usize = 500;
    runtime().block_on(async {
        let recorder = Recorder::open(&path, RecordOptions::default()).unwrap();
        let clone = recorder.clone();
        for i in 0..N {
            let handle = if i % 2 == 0 { &recorder } else { &clone };
            handle.record(sample(i, br#"{"userName":"x"}"#, 201));
        }
        assert_eq!(recorder.dropped(), 0);
        let finished = recorder.finished();
        drop(recorder);
        drop(clone);
        tokio::time::timeout(Duration::from_secs(30), finished)
            .await
            .expect("the writer stops once every handle is gone");
    });
    let back = read_capture(&path).unwrap();
    assert_eq!(back.len(), N);
    for (i, r) in back.iter().enumerate() {
        assert_eq!(r.id, format!("{i:032x}"), "in order");
    }
}

#[test]
fn a_full_channel_drops_counts_and_never_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.jsonl");
    runtime().block_on(async {
        let (open_gate, gate) = std::sync::mpsc::channel();
        let options = RecordOptions {
            channel: 2,
            ..RecordOptions::default()
        };
        let recorder = Recorder::start(&path, options, QUEUE_BYTES_LIMIT, Some(gate)).unwrap();
        let counted = Arc::new(AtomicU64::new(0));
        let hook = counted.clone();
        recorder.lines.on_drop(move |n| {
            hook.fetch_add(n, Ordering::Relaxed);
        });
        for i in 0..5 {
            recorder.record(sample(i, b"{}", 201));
        }
        assert_eq!(recorder.dropped(), 3, "2 fit in the channel, 3 dropped");
        assert_eq!(
            counted.load(Ordering::Relaxed),
            3,
            "the hook counts them too"
        );
        open_gate.send(()).unwrap();
        recorder.close().await;
        // After close, records are dropped and counted too.
        recorder.record(sample(9, b"{}", 201));
        assert_eq!(recorder.dropped(), 4);
        recorder.flush().await;
    });
    let ids: Vec<String> = read_capture(&path)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, vec![format!("{:032x}", 0), format!("{:032x}", 1)]);
}

#[test]
fn the_byte_budget_drops_records_beyond_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("budget.jsonl");
    runtime().block_on(async {
        let (open_gate, gate) = std::sync::mpsc::channel();
        let recorder =
            Recorder::start(&path, RecordOptions::default(), 10_000, Some(gate)).unwrap();
        let big = vec![b'a'; 6_000];
        recorder.record(sample(0, &big, 201));
        recorder.record(sample(1, &big, 201));
        // The first record of a queue always fits, however large.
        assert_eq!(recorder.dropped(), 1);
        open_gate.send(()).unwrap();
        recorder.flush().await;
        recorder.record(sample(2, &big, 201));
        recorder.close().await;
        assert_eq!(recorder.dropped(), 1, "the budget is freed once written");
    });
    assert_eq!(read_capture(&path).unwrap().len(), 2);
}

#[test]
fn pii_mode_hashes_with_one_salt_per_recorder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pii.jsonl");
    runtime().block_on(async {
        let options = RecordOptions {
            redact_pii: true,
            ..RecordOptions::default()
        };
        let recorder = Recorder::open(&path, options).unwrap();
        let body = include_bytes!("../../../benches/data/create_user.json");
        recorder.record(sample(0, body, 201));
        recorder.record(sample(1, body, 201));
        recorder.close().await;
    });
    let text = std::fs::read_to_string(&path).unwrap();
    for value in ["bjensen", "Babs Jensen", "bjensen@example.com", "Hollywood"] {
        assert!(!text.contains(value), "{value} in the capture");
    }
    let back = read_capture(&path).unwrap();
    let user = |r: &Record| serde_json::from_slice::<Value>(r.request.body.as_bytes()).unwrap();
    assert_eq!(user(&back[0])["userName"], user(&back[1])["userName"]);
    assert_ne!(
        user(&back[0])["userName"],
        crate::redact::pii_hash("bjensen", b"test salt")
    );
}

#[test]
fn rotation_keeps_five_private_files_under_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rot.jsonl");
    let line_len = serde_json::to_vec(&sample(0, br#"{"a":1}"#, 201))
        .unwrap()
        .len() as u64
        + 1;
    let max = line_len * 3;
    const N: usize = 40;
    runtime().block_on(async {
        let options = RecordOptions {
            max_bytes: Some(max),
            ..RecordOptions::default()
        };
        let recorder = Recorder::open(&path, options).unwrap();
        for i in 0..N {
            recorder.record(sample(i, br#"{"a":1}"#, 201));
            if i % 7 == 0 {
                recorder.flush().await;
            }
        }
        recorder.close().await;
    });
    assert!(!rotated_path(&path, ROTATE_KEEP + 1).exists());
    let mut all = Vec::new();
    for n in (1..=ROTATE_KEEP).rev() {
        let file = rotated_path(&path, n);
        assert!(std::fs::metadata(&file).unwrap().len() <= max);
        #[cfg(unix)]
        assert_eq!(mode(&file), 0o600);
        all.extend(read_capture(&file).unwrap());
    }
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);
    all.extend(read_capture(&path).unwrap());
    assert_eq!(read_capture_all(&path).unwrap(), all);
    assert_eq!(
        all.len(),
        3 * ROTATE_KEEP as usize + N % 3 + if N % 3 == 0 { 3 } else { 0 }
    );
    let first = N - all.len();
    for (k, r) in all.iter().enumerate() {
        assert_eq!(r.id, format!("{:032x}", first + k));
    }
}

#[test]
fn an_oversized_record_gets_a_file_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.jsonl");
    runtime().block_on(async {
        let options = RecordOptions {
            max_bytes: Some(100),
            ..RecordOptions::default()
        };
        let recorder = Recorder::open(&path, options).unwrap();
        recorder.record(sample(0, &[b'x'; 500], 201));
        recorder.record(sample(1, &[b'y'; 500], 201));
        recorder.close().await;
        assert_eq!(recorder.dropped(), 0);
    });
    assert_eq!(
        read_capture(&rotated_path(&path, 1)).unwrap()[0].id,
        format!("{:032x}", 0)
    );
    assert_eq!(read_capture(&path).unwrap()[0].id, format!("{:032x}", 1));
}

#[test]
fn reopening_appends_and_tightens_the_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("again.jsonl");
    std::fs::write(&path, "").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    runtime().block_on(async {
        for i in 0..2 {
            let recorder = Recorder::open(&path, RecordOptions::default()).unwrap();
            recorder.record(sample(i, b"{}", 201));
            recorder.close().await;
        }
    });
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);
    assert_eq!(read_capture(&path).unwrap().len(), 2);
    assert!(Recorder::open(&dir.path().join("no/such/dir/x"), RecordOptions::default()).is_err());
}

/// `/dev/full` fails every write with ENOSPC, as a full disk does: every line is
/// counted as dropped, nothing is left half-written, and the writer lives on.
#[cfg(target_os = "linux")]
#[test]
fn a_full_device_drops_and_counts_every_line() {
    let full = Path::new("/dev/full");
    if OpenOptions::new().append(true).open(full).is_err() {
        eprintln!("skipped: /dev/full cannot be opened");
        return;
    }
    let mut file = LineFile {
        path: full.to_owned(),
        what: "capture",
        file: OpenOptions::new().append(true).open(full).unwrap(),
        size: 0,
        max_bytes: None,
    };
    let shared = Shared {
        path: full.to_owned(),
        what: "capture",
        dropped: AtomicU64::new(0),
        queued_bytes: AtomicUsize::new(0),
        queue_bytes_limit: QUEUE_BYTES_LIMIT,
        on_drop: OnceLock::new(),
        drop_log: Mutex::new((None, 0)),
    };
    let mut pending = Pending::default();
    for i in 0..3 {
        pending.push(format!("{{\"n\":{i}}}\n").into_bytes(), i.to_string());
    }
    file.write(&mut pending, &shared);
    assert_eq!(shared.dropped.load(Ordering::Relaxed), 3);
    assert!(pending.bytes.is_empty() && pending.lines.is_empty());
}
