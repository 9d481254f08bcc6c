//! Raw HTTP/1.1 request files.

use super::{InputError, OfflineRequest};

/// RFC 9110 §5.6.2 token characters.
pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A cursor over the file that knows its line number.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// The 1-based line `pos` is on.
    line: usize,
}

impl<'a> Cursor<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn rest(&self) -> &'a [u8] {
        &self.bytes[self.pos.min(self.bytes.len())..]
    }

    /// The next line without its LF or CRLF, and its line number; `None` at the end.
    fn line(&mut self) -> Option<(usize, &'a [u8])> {
        if self.at_end() {
            return None;
        }
        let rest = self.rest();
        let (line, advance) = match rest.iter().position(|&b| b == b'\n') {
            Some(at) => (&rest[..at], at + 1),
            None => (rest, rest.len()),
        };
        let number = self.line;
        self.pos += advance;
        self.line += 1;
        Some((number, line.strip_suffix(b"\r").unwrap_or(line)))
    }

    /// Takes `n` bytes.
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let rest = self.rest();
        let taken = rest.get(..n)?;
        self.pos += n;
        self.line += taken.iter().filter(|&&b| b == b'\n').count();
        Some(taken)
    }

    fn skip_whitespace(&mut self) {
        while let Some(&b) = self.bytes.get(self.pos) {
            if !b.is_ascii_whitespace() {
                break;
            }
            if b == b'\n' {
                self.line += 1;
            }
            self.pos += 1;
        }
    }
}

/// Whether `bytes` starts with what looks like a request line (`TOKEN SP /…` or
/// `TOKEN SP http…`), to tell a following request from a body.
fn starts_with_request_line(bytes: &[u8]) -> bool {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let Ok(line) = std::str::from_utf8(line) else {
        return false;
    };
    let mut parts = line.split_ascii_whitespace();
    match (parts.next(), parts.next()) {
        (Some(method), Some(target)) => {
            is_token(method)
                && method.bytes().all(|b| b.is_ascii_uppercase())
                && (target.starts_with('/') || target.to_ascii_lowercase().starts_with("http"))
        }
        _ => false,
    }
}

/// The most headers one raw request may have: more is a file that is not a request.
const MAX_HEADERS: usize = 128;
/// What a request line without a version gets, for httparse.
const VERSION: &[u8] = b" HTTP/1.1";

pub(super) fn parse_raw(
    bytes: &[u8],
    origin: &str,
) -> Result<Vec<(String, OfflineRequest)>, InputError> {
    let error = |line: usize, message: String| InputError {
        file: origin.to_owned(),
        line: Some(line),
        message,
    };
    let mut cursor = Cursor {
        bytes,
        pos: 0,
        line: 1,
    };
    let mut requests = Vec::new();
    loop {
        cursor.skip_whitespace();
        if cursor.at_end() {
            break;
        }
        let start = cursor.line;
        let (method, target, headers, head_len) =
            parse_head(cursor.rest()).map_err(|(offset, m)| error(start + offset, m))?;
        let (path, query) = origin_form(&target).map_err(|m| error(start, m))?;
        cursor.take(head_len);
        let body_line = cursor.line;
        let body = read_body(&mut cursor, &headers).map_err(|m| error(body_line, m))?;
        requests.push((
            format!("{origin}:{start}"),
            OfflineRequest {
                method,
                path,
                query,
                headers,
                body,
            },
        ));
    }
    Ok(requests)
}

/// A request's head, parsed by httparse: method, target, headers, and the head's
/// length in `bytes`. The HTTP version may be left out of the request line (`DELETE
/// /Users/1`), and the blank line ending the head may be left out at the end of the
/// file. An error gives the line (counted from the request line, 0) and what is wrong.
#[allow(clippy::type_complexity)]
fn parse_head(
    bytes: &[u8],
) -> Result<(String, String, Vec<(String, String)>, usize), (usize, String)> {
    let first_end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    let first = &bytes[..first_end];
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    let request_line =
        std::str::from_utf8(first).map_err(|_| (0, "the request line is not UTF-8".to_owned()))?;
    check_request_line(request_line).map_err(|m| (0, m))?;
    // httparse wants `METHOD target HTTP/1.x`: a version left out is added. Only the
    // head is copied: up to the first blank line.
    let added_version = request_line.split_ascii_whitespace().count() == 2;
    let inserted = if added_version { VERSION.len() } else { 0 };
    let head_end = [&b"\n\n"[..], b"\n\r\n"]
        .iter()
        .filter_map(|blank| memchr::memmem::find(bytes, blank).map(|at| at + blank.len()))
        .min()
        .unwrap_or(bytes.len());
    let mut head: Vec<u8> = Vec::with_capacity(head_end + inserted);
    head.extend_from_slice(first);
    if added_version {
        head.extend_from_slice(VERSION);
    }
    head.extend_from_slice(&bytes[first.len()..head_end]);
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut slots);
    let parsed = match request.parse(&head) {
        Ok(httparse::Status::Complete(len)) => Ok(len),
        Ok(httparse::Status::Partial) => {
            // The file ends inside the head: end it with the blank line it lacks.
            let mut ended = head.clone();
            ended.extend_from_slice(if ended.ends_with(b"\n") {
                b"\n"
            } else {
                b"\n\n"
            });
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut again = httparse::Request::new(&mut slots);
            match again.parse(&ended) {
                Ok(httparse::Status::Complete(_)) => {
                    return head_of(&again, head.len() - inserted);
                }
                Ok(httparse::Status::Partial) => Err(httparse::Error::NewLine),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    match parsed {
        Ok(len) => head_of(&request, len - inserted),
        Err(httparse::Error::TooManyHeaders) => Err((
            0,
            format!("the request has more than {MAX_HEADERS} headers"),
        )),
        Err(e) => {
            Err(header_problem(&head)
                .unwrap_or((0, format!("the request head is not HTTP/1.1: {e}"))))
        }
    }
}

/// The parts of a request httparse read completely.
#[allow(clippy::type_complexity)]
fn head_of(
    request: &httparse::Request<'_, '_>,
    len: usize,
) -> Result<(String, String, Vec<(String, String)>, usize), (usize, String)> {
    let method = request.method.unwrap_or_default().to_owned();
    let target = request.path.unwrap_or_default().to_owned();
    let mut headers = Vec::with_capacity(request.headers.len());
    for (i, header) in request.headers.iter().enumerate() {
        let value = std::str::from_utf8(header.value)
            .map_err(|_| (i + 1, "the header line is not UTF-8".to_owned()))?;
        headers.push((header.name.to_owned(), value.trim().to_owned()));
    }
    Ok((method, target, headers, len))
}

/// Which header line httparse refused, and why, to name it: a folded line, a line
/// without `:`, a name that is not a token, a value that is not text.
fn header_problem(head: &[u8]) -> Option<(usize, String)> {
    for (i, line) in head.split(|&b| b == b'\n').enumerate().skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None;
        }
        let Ok(text) = std::str::from_utf8(line) else {
            return Some((i, "the header line is not UTF-8".into()));
        };
        if text.starts_with([' ', '\t']) {
            return Some((
                i,
                "a header line folded onto the previous one is obsolete (RFC 9112 §5.2); join it"
                    .into(),
            ));
        }
        let Some((name, _)) = text.split_once(':') else {
            return Some((
                i,
                format!(
                    "`{text}` is not a header (`Name: value`); a blank line must end the headers"
                ),
            ));
        };
        if !is_token(name) {
            return Some((i, format!("`{name}` is not a header name")));
        }
        if line.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f) {
            return Some((
                i,
                format!("the value of `{name}` holds a control character"),
            ));
        }
    }
    None
}

/// The request line's method and target form, checked before httparse reads it so a
/// mistake is named: `METHOD /path [HTTP/1.x]`.
fn check_request_line(line: &str) -> Result<(), String> {
    let parts: Vec<&str> = line.split_ascii_whitespace().collect();
    let (method, target) = match parts.as_slice() {
        [method, target] => (*method, *target),
        [method, target, version] if version.starts_with("HTTP/") => (*method, *target),
        _ => {
            return Err(format!(
                "`{line}` is not a request line; expected `METHOD /path HTTP/1.1`"
            ))
        }
    };
    if !is_token(method) {
        return Err(format!("`{method}` is not an HTTP method"));
    }
    origin_form(target).map(|_| ())
}

/// A target's path and query: an origin-form target as it is, an absolute URL's path
/// and query (a fragment dropped).
fn origin_form(target: &str) -> Result<(String, Option<String>), String> {
    let target = target.split('#').next().unwrap_or_default();
    let origin_form = if target.starts_with('/') {
        target.to_owned()
    } else {
        let lower = target.to_ascii_lowercase();
        let after_scheme = ["http://", "https://"]
            .iter()
            .find(|s| lower.starts_with(*s))
            .map(|s| &target[s.len()..])
            .ok_or_else(|| {
                format!(
                    "the target `{target}` is neither a path (/scim/v2/Users) nor an http(s) URL"
                )
            })?;
        match after_scheme.find(['/', '?']) {
            Some(at) if after_scheme[at..].starts_with('/') => after_scheme[at..].to_owned(),
            Some(at) => format!("/{}", &after_scheme[at..]),
            None => "/".to_owned(),
        }
    };
    Ok(match origin_form.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (origin_form, None),
    })
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Vec<&'h str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

fn read_body(cursor: &mut Cursor<'_>, headers: &[(String, String)]) -> Result<Vec<u8>, String> {
    let lengths = header(headers, "content-length");
    let encodings = header(headers, "transfer-encoding");
    if !encodings.is_empty() {
        if !lengths.is_empty() {
            return Err("both Content-Length and Transfer-Encoding are given; keep one".into());
        }
        if encodings.len() != 1 || !encodings[0].eq_ignore_ascii_case("chunked") {
            return Err(format!(
                "Transfer-Encoding `{}` is not supported; use chunked or Content-Length",
                encodings.join(", ")
            ));
        }
        return read_chunked(cursor);
    }
    if let Some(first) = lengths.first() {
        let all_same = lengths.iter().all(|l| l == first);
        let length = first
            .parse::<usize>()
            .ok()
            .filter(|_| all_same && first.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("Content-Length `{}` is not one number", lengths.join(", ")))?;
        let available = cursor.rest().len();
        return cursor.take(length).map(<[u8]>::to_vec).ok_or_else(|| {
            format!("Content-Length says {length} bytes but only {available} follow")
        });
    }
    // Neither: no body when another request follows, else the rest of the file.
    let rest = cursor.rest();
    let start = rest
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(rest.len());
    if start == rest.len() || starts_with_request_line(&rest[start..]) {
        return Ok(Vec::new());
    }
    let body = cursor.take(rest.len()).unwrap_or_default();
    // The line break an editor ends a file with is not part of the body.
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    Ok(body.to_vec())
}

/// RFC 9112 §7.1: hex size lines (extensions ignored), data, a last chunk of 0 and
/// optional trailer lines up to a blank line.
fn read_chunked(cursor: &mut Cursor<'_>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let (number, line) = cursor
            .line()
            .ok_or("the chunked body ends before its last chunk (a `0` line)")?;
        let line = std::str::from_utf8(line).unwrap_or_default();
        let size_text = line.split(';').next().unwrap_or_default().trim();
        // 15 hex digits are far beyond any file; more would overflow.
        let size = (!size_text.is_empty() && size_text.len() <= 15)
            .then(|| usize::from_str_radix(size_text, 16).ok())
            .flatten()
            .ok_or_else(|| format!("line {number}: `{line}` is not a chunk size in hex"))?;
        if size == 0 {
            while let Some((_, trailer)) = cursor.line() {
                if trailer.is_empty() {
                    break;
                }
            }
            return Ok(body);
        }
        let available = cursor.rest().len();
        let data = cursor.take(size).ok_or_else(|| {
            format!("a chunk of {size} bytes (line {number}) has only {available} bytes left")
        })?;
        body.extend_from_slice(data);
        match cursor.line() {
            Some((_, [])) => {}
            _ => {
                return Err(format!(
                    "the chunk of {size} bytes at line {number} is not followed by a line break"
                ))
            }
        }
    }
}
