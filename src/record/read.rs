//! Reading captures: the one function every reader uses (`check`, `replay`,
//! `export-har`, `report`): [`captures`].
//!
//! A capture's last line may be cut (a crash, a full disk, a copy in progress): its
//! whole lines are used and the cut one is skipped with a warning naming its line. A
//! corrupt line elsewhere is skipped with a warning naming it. With `strict`, either is
//! an error. A record of a newer version than this scimguard reads is always an error.

use std::path::{Path, PathBuf};

use super::{check_version, rotated_path, Event, Record, ROTATE_KEEP};

/// A capture that cannot be read, with the line at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
}

/// Records read from one or more captures, and what was skipped on the way.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Capture {
    /// One file's records in file order; several files' merged by time.
    pub records: Vec<Record>,
    /// One line per skipped line, naming the file and line (`FILE:N: …`).
    pub warnings: Vec<String>,
    /// The events beside the exchanges (guard trips and releases), in the same order.
    pub events: Vec<Event>,
}

/// Reads captures with their rotated files (`FILE.5` … `FILE.1`, then `FILE`). One
/// file's records keep their order; several files (one per replica) are merged by
/// time (stable, so records of one instant keep their file order). Cut and corrupt
/// lines are skipped with a warning, or with `strict` are an error.
pub fn captures(paths: &[PathBuf], strict: bool) -> Result<Capture, CaptureError> {
    let mut all = Capture::default();
    for path in paths {
        let files = (1..=ROTATE_KEEP)
            .rev()
            .map(|n| rotated_path(path, n))
            .filter(|rotated| rotated.exists())
            .chain(std::iter::once(path.clone()));
        for file in files {
            let bytes = read_file(&file)?;
            let one = parse_lines(&bytes, &file.display().to_string(), strict)?;
            all.records.extend(one.records);
            all.warnings.extend(one.warnings);
            all.events.extend(one.events);
        }
    }
    if paths.len() > 1 {
        // One width, UTC: text order is time order (`super::rfc3339`).
        all.records.sort_by(|a, b| a.time.cmp(&b.time));
        all.events.sort_by(|a, b| a.time.cmp(&b.time));
    }
    Ok(all)
}

fn read_file(path: &Path) -> Result<Vec<u8>, CaptureError> {
    std::fs::read(path).map_err(|source| CaptureError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Parses a capture's bytes; `origin` names it in warnings and errors. Blank lines are
/// skipped; line ends may be LF or CRLF.
pub fn parse_lines(bytes: &[u8], origin: &str, strict: bool) -> Result<Capture, CaptureError> {
    let mut capture = Capture::default();
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    // The line after the last `\n`: a whole line always ends with one.
    let last = lines.len().saturating_sub(1);
    for (i, line) in lines.iter().enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let number = i + 1;
        let error = |message: String| CaptureError::Line {
            path: origin.to_owned(),
            line: number,
            message,
        };
        match serde_json::from_slice::<Record>(line) {
            Ok(record) => {
                check_version(record.version).map_err(error)?;
                capture.records.push(record);
            }
            Err(e) => match Event::from_line(line) {
                Some(event) => {
                    check_version(event.version).map_err(error)?;
                    capture.events.push(event);
                }
                None => {
                    let kept = capture.records.len();
                    let warning =
                        unreadable_line(origin, number, i == last, &json_message(&e), kept, strict)
                            .map_err(error)?;
                    capture.warnings.push(warning);
                }
            },
        }
    }
    Ok(capture)
}

/// What to do with line `number` of `origin` that is not a record: the warning to give
/// when it is skipped, or (with `strict`) the error message. The last line of a file
/// (after its last line break) is a cut line: the recording stopped while writing it.
/// `kept`: the records read before it. Every reader of JSON lines words it so.
pub fn unreadable_line(
    origin: &str,
    number: usize,
    last: bool,
    problem: &str,
    kept: usize,
    strict: bool,
) -> Result<String, String> {
    match (last, strict) {
        (true, true) => Err(format!(
            "the last line is cut ({problem}): the recording stopped while writing it, or the file is still being copied. Fix: delete that line, or read without --strict to skip it"
        )),
        (true, false) => Ok(format!(
            "{origin}:{number}: the last line is cut ({problem}); it is skipped and the {kept} whole line(s) before it are used"
        )),
        (false, true) => Err(format!(
            "{problem}. Fix: delete or repair that line, or read without --strict to skip it"
        )),
        (false, false) => Ok(format!("{origin}:{number}: skipped, not readable: {problem}")),
    }
}

/// Reads one capture file, strictly: any line that is not a record is an error.
pub fn read_capture(path: &Path) -> Result<Vec<Record>, CaptureError> {
    let bytes = read_file(path)?;
    parse_capture(&bytes, &path.display().to_string())
}

/// Reads a capture with its rotated files, oldest first, strictly.
pub fn read_capture_all(path: &Path) -> Result<Vec<Record>, CaptureError> {
    captures(&[path.to_owned()], true).map(|c| c.records)
}

/// Parses a capture's bytes strictly; `origin` names it in errors.
pub fn parse_capture(bytes: &[u8], origin: &str) -> Result<Vec<Record>, CaptureError> {
    parse_lines(bytes, origin, true).map(|c| c.records)
}

/// A serde_json error's message with its column, without serde_json's "at line 1".
pub fn json_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let message = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => text.as_str(),
    };
    format!("{message} (column {})", error.column())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;

    fn line(i: usize) -> String {
        serde_json::to_string(&sample(i, b"{}", 201)).unwrap()
    }

    #[test]
    fn events_are_kept_apart_from_the_records_in_order() {
        let event = |kind: &str| {
            serde_json::to_string(&Event::new(kind, "t", "what".into(), serde_json::json!({})))
                .unwrap()
        };
        let text = format!(
            "{}\n{}\n{}\n{}\n",
            line(0),
            event(super::super::EVENT_GUARD_TRIP),
            line(1),
            event(super::super::EVENT_GUARD_RELEASE)
        );
        let capture = parse_lines(text.as_bytes(), "c.jsonl", true).unwrap();
        assert_eq!(capture.records.len(), 2);
        assert!(capture.warnings.is_empty(), "{:?}", capture.warnings);
        let kinds: Vec<&str> = capture.events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(kinds, ["guard.trip", "guard.release"]);
        // An event of a newer version is refused as a newer record is.
        let newer = event("guard.trip").replacen("\"version\":2", "\"version\":3", 1);
        assert!(parse_lines(newer.as_bytes(), "c", false).is_err());
    }

    #[test]
    fn read_errors_name_the_line() {
        let good = line(0);
        let text = format!("{good}\n\n{good}\n{{\"version\":1}}\n");
        match parse_capture(text.as_bytes(), "c.jsonl") {
            Err(CaptureError::Line {
                line: 4, message, ..
            }) => {
                assert!(message.contains("missing field"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        let newer = good.replacen("\"version\":2", "\"version\":3", 1);
        let e = parse_capture(newer.as_bytes(), "c.jsonl").unwrap_err();
        assert!(
            e.to_string().starts_with("c.jsonl:1: record version 3"),
            "{e}"
        );
        let e = parse_capture(b"\xff\xfe\n", "c.jsonl").unwrap_err();
        assert!(e.to_string().starts_with("c.jsonl:1:"), "{e}");
        assert!(parse_capture(b"", "c").unwrap().is_empty());
        assert!(parse_capture(b"\r\n  \n", "c").unwrap().is_empty());
        assert!(matches!(
            read_capture(Path::new("/nonexistent/capture")),
            Err(CaptureError::Io { .. })
        ));
        assert_eq!(
            parse_capture(format!("{good}\r\n{good}\r\n").as_bytes(), "c")
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn a_cut_last_line_is_skipped_with_one_warning_or_refused_when_strict() {
        let cut = format!("{}\n{}\n{}", line(0), line(1), &line(2)[..40]);
        let capture = parse_lines(cut.as_bytes(), "c.jsonl", false).unwrap();
        assert_eq!(capture.records.len(), 2);
        assert_eq!(capture.warnings.len(), 1, "{:?}", capture.warnings);
        assert!(
            capture.warnings[0].starts_with("c.jsonl:3: the last line is cut"),
            "{:?}",
            capture.warnings
        );
        let e = parse_lines(cut.as_bytes(), "c.jsonl", true).unwrap_err();
        assert!(
            e.to_string().starts_with("c.jsonl:3: the last line is cut"),
            "{e}"
        );
    }

    #[test]
    fn a_corrupt_line_elsewhere_is_skipped_with_a_warning_naming_it() {
        let text = format!("{}\n{}{}\n{}\n", line(0), &line(1)[..30], line(2), line(3));
        let capture = parse_lines(text.as_bytes(), "c.jsonl", false).unwrap();
        let ids: Vec<&str> = capture.records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, [format!("{:032x}", 0), format!("{:032x}", 3)]);
        assert_eq!(capture.warnings.len(), 1);
        assert!(
            capture.warnings[0].starts_with("c.jsonl:2: skipped"),
            "{:?}",
            capture.warnings
        );
        assert!(parse_lines(text.as_bytes(), "c.jsonl", true).is_err());
    }

    #[test]
    fn several_captures_merge_by_time_with_their_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jsonl");
        let b = dir.path().join("b.jsonl");
        let with_replica = |i: usize, replica: &str| {
            let mut r = sample(i, b"{}", 201);
            r.replica = Some(replica.into());
            serde_json::to_string(&r).unwrap() + "\n"
        };
        std::fs::write(rotated_path(&a, 1), with_replica(0, "a")).unwrap();
        std::fs::write(&a, with_replica(3, "a") + &with_replica(4, "a")).unwrap();
        std::fs::write(&b, with_replica(1, "b") + &with_replica(2, "b") + "{\"cut").unwrap();
        let capture = captures(&[a.clone(), b.clone()], false).unwrap();
        let order: Vec<(String, String)> = capture
            .records
            .iter()
            .map(|r| (r.id.clone(), r.replica.clone().unwrap()))
            .collect();
        let expected: Vec<(String, String)> = [(0, "a"), (1, "b"), (2, "b"), (3, "a"), (4, "a")]
            .iter()
            .map(|(i, r)| (format!("{i:032x}"), r.to_string()))
            .collect();
        assert_eq!(order, expected);
        assert_eq!(capture.warnings.len(), 1, "{:?}", capture.warnings);
        assert!(
            capture.warnings[0].contains("b.jsonl:3:"),
            "{:?}",
            capture.warnings
        );
        assert!(captures(&[a, b], true).is_err());
    }

    proptest::proptest! {
        #[test]
        fn reading_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = parse_lines(&bytes, "fuzz", false);
            let _ = parse_lines(&bytes, "fuzz", true);
        }
    }
}
