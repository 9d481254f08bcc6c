//! A borrowed parse of a request body, for screening: most requests are clean, and
//! showing that every rule stays quiet on this tree spares building, walking and
//! dropping a `serde_json::Value` (its `String`s and `BTreeMap` nodes were half of a
//! clean CreateUser's instructions). Strings borrow from the body unless they hold
//! escapes; objects keep their members in body order.
//!
//! The nodes live in a per-thread arena ([`with_arena`]), reset after each evaluation:
//! a clean body allocates nothing per array or object, which cuts the tree of a
//! 100-member PatchGroup from 110k to 89k instructions (callgrind).
//!
//! The tree is only built for bodies where a case-insensitive lookup has one answer:
//! an object with two keys equal ignoring ASCII case (`userName` and `USERNAME`, or a
//! repeated key, which `serde_json::Value` resolves last-wins) makes [`parse`] answer
//! `None`, and the rules then read the `Value` as they always did. serde_json's own
//! recursion limit (128 levels) bounds the nesting, as it does for a `Value`.

use std::cell::RefCell;
use std::cmp::Ordering;

use bumpalo::Bump;

/// One JSON value of the body.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Node<'a> {
    Null,
    Bool(bool),
    /// Rules never look inside numbers.
    Number,
    String(&'a str),
    Array(&'a [Node<'a>]),
    Object(&'a Members<'a>),
}

/// An object's members, in body order, no two keys equal ignoring ASCII case.
pub(crate) type Members<'a> = [(&'a str, Node<'a>)];

impl<'a> Node<'a> {
    pub fn as_object(&self) -> Option<&Members<'a>> {
        match self {
            Node::Object(members) => Some(members),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Node<'a>]> {
        match self {
            Node::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::String(s) => Some(s),
            _ => None,
        }
    }

    /// The member of an object named exactly `key` (as `serde_json::Map::get`).
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        get(self.as_object()?, key)
    }
}

/// The member named exactly `key`.
pub(crate) fn get<'n, 'a>(members: &'n Members<'a>, key: &str) -> Option<&'n Node<'a>> {
    members.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// The member whose key equals `name` ignoring ASCII case: the one `user::entry` finds
/// in the `Value`, since keys do not collide. Keys mostly match as spelled, and
/// comparing the bytes first cuts a clean CreateUser by 1.5k instructions (callgrind).
pub(crate) fn entry<'n, 'a>(
    members: &'n Members<'a>,
    name: &str,
) -> Option<(&'n str, &'n Node<'a>)> {
    members
        .iter()
        .find(|(k, _)| *k == name || k.eq_ignore_ascii_case(name))
        .map(|(k, v)| (*k, v))
}

/// A request body as screening sees it.
pub(crate) enum Screen<'a> {
    /// Blank: the checks see no body.
    Blank,
    Tree(Node<'a>),
    /// Not JSON, or with colliding keys: only the checks can judge it.
    Opaque,
}

impl<'a> Screen<'a> {
    pub fn of(body: &'a [u8], arena: &'a Bump) -> Self {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Screen::Blank;
        }
        match parse(body, arena) {
            Some(node) => Screen::Tree(node),
            None => Screen::Opaque,
        }
    }

    /// The root for [`super::check::quiet`] (`Some(None)` for a blank body), unless the
    /// body is opaque.
    pub fn root(&self) -> Option<Option<&Node<'a>>> {
        match self {
            Screen::Blank => Some(None),
            Screen::Tree(node) => Some(Some(node)),
            Screen::Opaque => None,
        }
    }
}

/// Past this many bytes of nodes (a body of several hundred KB), the thread gives its
/// arena back after the evaluation rather than keep it for the next one.
const ARENA_RETAINED: usize = 1 << 20;

thread_local! {
    static ARENA: RefCell<Bump> = RefCell::new(Bump::new());
}

/// Runs `f` with this thread's arena for [`Screen::of`], emptied afterwards. An
/// evaluation never evaluates another request; should one ever do, the inner one gets
/// an arena of its own rather than a panic.
pub(crate) fn with_arena<R>(f: impl FnOnce(&Bump) -> R) -> R {
    ARENA.with(|cell| match cell.try_borrow_mut() {
        Ok(mut arena) => {
            let out = f(&arena);
            if arena.allocated_bytes() > ARENA_RETAINED {
                *arena = Bump::new();
            } else {
                arena.reset();
            }
            out
        }
        Err(_) => f(&Bump::new()),
    })
}

/// Deepest nesting read here: serde_json refuses a 128th level
/// (`RecursionLimitExceeded`), so this takes exactly what it takes.
const MAX_NESTING: u32 = 127;

/// Parses a body that is JSON and whose objects have no colliding keys, into `arena`;
/// `None` for anything else (the rules then parse it as a `Value`, for the same error).
///
/// Hand-written rather than driven by serde: the serde visitor spent 26k instructions
/// on a clean 1.2 KB CreateUser (callgrind), a quarter of the proxy's work on it,
/// mostly in per-token dispatch; this reads plain strings eight bytes a step
/// ([`crate::json_syntax::special_from`]) and borrows them. It takes what serde_json
/// takes, with one exception on the safe side: a number with a three-digit exponent,
/// or longer than 100 characters, makes it answer `None` (serde_json refuses some of
/// those as out of range, and the `Value` parse then tells which). Strings holding
/// escapes are decoded by serde_json itself. The tests hold it to the serde-driven
/// parse it replaced.
pub(crate) fn parse<'a>(body: &'a [u8], arena: &'a Bump) -> Option<Node<'a>> {
    // One UTF-8 check for the whole body; every string then ends at an ASCII quote, so
    // slicing the text there is always on a character boundary.
    let text = std::str::from_utf8(body).ok()?;
    // Room for the runs of a typical body (a CreateUser's 22 root members), so the
    // scratch stacks rarely grow: growing them cost 3k of a CreateUser's instructions.
    let mut parser = Parser {
        text,
        bytes: body,
        at: 0,
        builder: Builder {
            arena,
            items: Vec::with_capacity(32),
            members: Vec::with_capacity(32),
        },
    };
    let node = parser.value(0)?;
    parser.skip_whitespace();
    (parser.at == body.len()).then_some(node)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    builder: Builder<'a>,
}

impl<'a> Parser<'a> {
    fn value(&mut self, depth: u32) -> Option<Node<'a>> {
        self.skip_whitespace();
        match *self.bytes.get(self.at)? {
            b'"' => {
                self.at += 1;
                self.string().map(Node::String)
            }
            b'[' if depth < MAX_NESTING => {
                self.at += 1;
                self.array(depth + 1)
            }
            b'{' if depth < MAX_NESTING => {
                self.at += 1;
                self.object(depth + 1)
            }
            b't' => self.literal(b"true", Node::Bool(true)),
            b'f' => self.literal(b"false", Node::Bool(false)),
            b'n' => self.literal(b"null", Node::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// After `[`: the items, then the run copied into the arena in one piece.
    fn array(&mut self, depth: u32) -> Option<Node<'a>> {
        let start = self.builder.items.len();
        self.skip_whitespace();
        if self.bytes.get(self.at) == Some(&b']') {
            self.at += 1;
        } else {
            loop {
                let item = self.value(depth)?;
                self.builder.items.push(item);
                self.skip_whitespace();
                match self.next()? {
                    b',' => {}
                    b']' => break,
                    _ => return None,
                }
            }
        }
        Some(Node::Array(take_run(
            self.builder.arena,
            &mut self.builder.items,
            start,
        )))
    }

    /// After `{`: the members, refused when two keys collide.
    fn object(&mut self, depth: u32) -> Option<Node<'a>> {
        let start = self.builder.members.len();
        self.skip_whitespace();
        if self.bytes.get(self.at) == Some(&b'}') {
            self.at += 1;
        } else {
            loop {
                self.skip_whitespace();
                if self.next()? != b'"' {
                    return None;
                }
                let key = self.string()?;
                self.skip_whitespace();
                if self.next()? != b':' {
                    return None;
                }
                let value = self.value(depth)?;
                self.builder.members.push((key, value));
                self.skip_whitespace();
                match self.next()? {
                    b',' => {}
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        if keys_collide(&self.builder.members[start..]) {
            return None;
        }
        Some(Node::Object(take_run(
            self.builder.arena,
            &mut self.builder.members,
            start,
        )))
    }

    /// After the opening quote: the text, borrowed from the body when it has no
    /// escape.
    fn string(&mut self) -> Option<&'a str> {
        let start = self.at;
        let end = crate::json_syntax::special_from(self.bytes, start);
        match self.bytes.get(end)? {
            b'"' => {
                self.at = end + 1;
                Some(&self.text[start..end])
            }
            b'\\' => self.escaped_string(start, end),
            // A raw control character: JSON wants it escaped.
            _ => None,
        }
    }

    /// A string from `start` (after its quote) with an escape at `escape`: its end
    /// found by skipping each escaped byte, then decoded by serde_json (surrogate pairs
    /// and all) into the arena.
    fn escaped_string(&mut self, start: usize, escape: usize) -> Option<&'a str> {
        let mut at = escape;
        loop {
            match self.bytes.get(at)? {
                b'"' => break,
                b'\\' => at = crate::json_syntax::special_from(self.bytes, at + 2),
                _ => return None,
            }
        }
        // `start - 1` and `at` are ASCII quotes: character boundaries.
        let decoded: String = serde_json::from_str(&self.text[start - 1..=at]).ok()?;
        self.at = at + 1;
        Some(self.builder.arena.alloc_str(&decoded))
    }

    fn literal(&mut self, word: &[u8], node: Node<'a>) -> Option<Node<'a>> {
        if self.bytes.get(self.at..self.at + word.len())? != word {
            return None;
        }
        self.at += word.len();
        Some(node)
    }

    /// A number ([`crate::json_syntax::number`]); see [`parse`] for the ones left to
    /// serde_json.
    fn number(&mut self) -> Option<Node<'a>> {
        let start = self.at;
        let token = crate::json_syntax::number(self.bytes, start)?;
        self.at = token.end;
        // An exponent up to 99, after at most 100 characters, stays far inside f64's
        // range (about 1.8e308).
        (token.exponent_digits <= 2 && token.end - start <= 100).then_some(Node::Number)
    }

    fn next(&mut self) -> Option<u8> {
        let byte = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    fn skip_whitespace(&mut self) {
        self.at = crate::json_syntax::skip_whitespace(self.bytes, self.at);
    }
}

/// Whether two keys of an object are equal ignoring ASCII case. Keys that can be equal
/// share a bucket of their length and first and last letters, and only those are
/// compared: 1k instructions for a CreateUser's keys where comparing every pair cost
/// 4k (callgrind). Past 64 keys (a hostile object) they are sorted instead, so
/// the cost stays n log n.
fn keys_collide(members: &Members<'_>) -> bool {
    if members.len() < 2 {
        return false;
    }
    if members.len() > 64 {
        let mut keys: Vec<&str> = members.iter().map(|(k, _)| *k).collect();
        keys.sort_unstable_by(|a, b| cmp_ignore_ascii_case(a, b));
        return keys.windows(2).any(|w| w[0].eq_ignore_ascii_case(w[1]));
    }
    let mut seen = 0u128;
    members.iter().enumerate().any(|(i, (key, _))| {
        let bit = 1u128 << bucket(key);
        let shared = seen & bit != 0;
        seen |= bit;
        shared
            && members[..i]
                .iter()
                .any(|(other, _)| other.eq_ignore_ascii_case(key))
    })
}

/// How many values [`bucket`] takes.
pub(crate) const BUCKETS: usize = 128;

/// A key's bucket: keys equal ignoring ASCII case share their length and their first
/// and last letters, hence their bucket.
pub(crate) fn bucket(key: &str) -> usize {
    let bytes = key.as_bytes();
    let edge = |b: Option<&u8>| usize::from(b.map_or(0, u8::to_ascii_lowercase));
    (bytes.len() ^ edge(bytes.first()) << 1 ^ edge(bytes.last()) << 3) % BUCKETS
}

fn cmp_ignore_ascii_case(a: &str, b: &str) -> Ordering {
    let lower = |b: u8| b.to_ascii_lowercase();
    a.bytes().map(lower).cmp(b.bytes().map(lower))
}

/// The arena and the scratch stacks of one parse: an array's items (an object's
/// members) are pushed as they are read, each nested value having popped its own by
/// then, and the finished run is copied into the arena in one piece.
struct Builder<'a> {
    arena: &'a Bump,
    items: Vec<Node<'a>>,
    members: Vec<(&'a str, Node<'a>)>,
}

/// Moves the finished run `stack[start..]` of an array or object into the arena.
fn take_run<'a, T: Copy>(arena: &'a Bump, stack: &mut Vec<T>, start: usize) -> &'a [T] {
    let run = arena.alloc_slice_copy(&stack[start..]);
    stack.truncate(start);
    run
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json_syntax::strategy::{damage, json_ish, splice};

    /// The serde-driven parse this module used before: the oracle the hand-written one
    /// is held to.
    mod oracle {
        use super::super::*;
        use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
        use std::fmt;

        pub fn parse<'a>(body: &'a [u8], arena: &'a Bump) -> Option<Node<'a>> {
            let text = std::str::from_utf8(body).ok()?;
            let mut de = serde_json::Deserializer::from_str(text);
            let mut builder = Builder {
                arena,
                items: Vec::new(),
                members: Vec::new(),
            };
            let node = NodeSeed(&mut builder).deserialize(&mut de).ok()?;
            de.end().ok()?;
            Some(node)
        }

        /// A string, borrowed from the body unless it holds escapes (then copied to the arena).
        struct Text<'a>(&'a Bump);

        impl<'a> Visitor<'a> for Text<'a> {
            type Value = &'a str;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'a str) -> Result<Self::Value, E> {
                Ok(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(self.0.alloc_str(v))
            }
        }

        impl<'a> DeserializeSeed<'a> for Text<'a> {
            type Value = &'a str;
            fn deserialize<D: Deserializer<'a>>(
                self,
                deserializer: D,
            ) -> Result<Self::Value, D::Error> {
                deserializer.deserialize_str(self)
            }
        }

        struct NodeSeed<'b, 'a>(&'b mut Builder<'a>);

        impl<'a> DeserializeSeed<'a> for NodeSeed<'_, 'a> {
            type Value = Node<'a>;
            fn deserialize<D: Deserializer<'a>>(
                self,
                deserializer: D,
            ) -> Result<Self::Value, D::Error> {
                deserializer.deserialize_any(self)
            }
        }

        impl<'a> Visitor<'a> for NodeSeed<'_, 'a> {
            type Value = Node<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Node::Null)
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Node::Bool(v))
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Node::Number)
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Node::Number)
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Node::Number)
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'a str) -> Result<Self::Value, E> {
                Ok(Node::String(v))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Node::String(self.0.arena.alloc_str(v)))
            }

            fn visit_seq<A: SeqAccess<'a>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let builder = self.0;
                let start = builder.items.len();
                while let Some(item) = seq.next_element_seed(NodeSeed(&mut *builder))? {
                    builder.items.push(item);
                }
                let items = builder.arena.alloc_slice_copy(&builder.items[start..]);
                builder.items.truncate(start);
                Ok(Node::Array(items))
            }

            fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let builder = self.0;
                let start = builder.members.len();
                while let Some(key) = map.next_key_seed(Text(builder.arena))? {
                    let value = map.next_value_seed(NodeSeed(&mut *builder))?;
                    builder.members.push((key, value));
                }
                if keys_collide(&builder.members[start..]) {
                    return Err(de::Error::custom("keys equal ignoring case"));
                }
                let members = builder.arena.alloc_slice_copy(&builder.members[start..]);
                builder.members.truncate(start);
                Ok(Node::Object(members))
            }
        }
    }

    #[test]
    fn borrows_plain_strings_and_copies_escaped_ones_to_the_arena() {
        let text = r#"{"a": "plain", "b\u0041": ["x\n", 1, 2.5, -3, true, null]}"#;
        let arena = Bump::new();
        let node = parse(text.as_bytes(), &arena).unwrap();
        let in_body = |s: &str| text.as_bytes().as_ptr_range().contains(&s.as_ptr());
        let members = node.as_object().unwrap();
        assert!(members[0].0 == "a" && in_body(members[0].0));
        assert!(matches!(members[0].1, Node::String(s) if s == "plain" && in_body(s)));
        assert!(members[1].0 == "bA" && !in_body(members[1].0));
        assert_eq!(
            members[1].1,
            Node::Array(&[
                Node::String("x\n"),
                Node::Number,
                Node::Number,
                Node::Number,
                Node::Bool(true),
                Node::Null,
            ])
        );
        assert!(matches!(members[1].1.as_array().unwrap()[0], Node::String(s) if !in_body(s)));
    }

    #[test]
    fn refuses_colliding_keys_and_what_serde_json_refuses() {
        for bad in [
            r#"{"a": 1, "a": 2}"#,
            r#"{"userName": 1, "USERNAME": 2}"#,
            r#"{"x": {"k0":0,"k1":0,"k2":0,"k3":0,"k4":0,"k5":0,"k6":0,"k7":0,"K3":0}}"#,
            r#"{"ab": 0, "Ab": 1}"#,
            r#"{"a": 1} x"#,
            r#"{"a": 1e999}"#,
            "{\"a\": \"\u{0}\"}",
            "[\"\\ud800\"]",
        ] {
            assert_eq!(parse(bad.as_bytes(), &Bump::new()), None, "{bad}");
        }
        assert_eq!(parse(b"\xff", &Bump::new()), None);
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(parse(deep.as_bytes(), &Bump::new()), None);
        let many = |n: usize, last: &str| {
            let keys: Vec<String> = (0..n).map(|i| format!("\"k{i}\": 0")).collect();
            format!("{{{}, \"{last}\": 0}}", keys.join(", "))
        };
        for n in [8, 100] {
            assert!(
                parse(many(n, "x").as_bytes(), &Bump::new()).is_some(),
                "{n}"
            );
            assert_eq!(parse(many(n, "K7").as_bytes(), &Bump::new()), None, "{n}");
        }
    }

    #[test]
    fn looks_up_exactly_and_ignoring_case() {
        let arena = Bump::new();
        let node = parse(br#"{"userName": "u", "Operations": []}"#, &arena).unwrap();
        assert_eq!(node.get("userName").and_then(Node::as_str), Some("u"));
        assert_eq!(node.get("username"), None);
        let (key, value) = entry(node.as_object().unwrap(), "operations").unwrap();
        assert_eq!((key, value), ("Operations", &Node::Array(&[])));
    }

    #[test]
    fn gives_back_an_arena_grown_by_a_large_body() {
        let large = format!("[{}]", vec![r#"{"a": 1}"#; 100_000].join(","));
        with_arena(|arena| assert!(parse(large.as_bytes(), arena).is_some()));
        ARENA.with_borrow(|arena| assert!(arena.allocated_bytes() <= ARENA_RETAINED));
    }

    /// The two parses agree, except where the hand-written one declines a number it
    /// leaves to serde_json (a three-digit exponent).
    fn agree(text: &str) -> Result<(), proptest::test_runner::TestCaseError> {
        let (ours, theirs) = (Bump::new(), Bump::new());
        let ours = parse(text.as_bytes(), &ours);
        let theirs = oracle::parse(text.as_bytes(), &theirs);
        let declined = ours.is_none() && theirs.is_some();
        let long_exponent = text.bytes().enumerate().any(|(i, b)| {
            let rest = text.as_bytes()[i + 1..]
                .strip_prefix(b"-")
                .or_else(|| text.as_bytes()[i + 1..].strip_prefix(b"+"))
                .unwrap_or(&text.as_bytes()[i + 1..]);
            matches!(b, b'e' | b'E') && rest.iter().take_while(|b| b.is_ascii_digit()).count() >= 3
        });
        proptest::prop_assert!(
            ours == theirs || (declined && long_exponent),
            "{:?}: {:?} vs {:?}",
            text,
            ours,
            theirs
        );
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        #[test]
        fn agrees_with_the_serde_parse(text in json_ish()) {
            agree(&text)?;
        }

        #[test]
        fn agrees_with_the_serde_parse_on_damaged_bodies(
            text in json_ish(),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
            splice in splice(),
        ) {
            let (damaged, truncated) = damage(&text, cut, splice);
            agree(&damaged)?;
            agree(truncated)?;
        }
    }

    #[test]
    fn agrees_with_the_serde_parse_on_fixed_bodies() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        for text in [
            include_str!("../../benches/data/create_user.json").to_owned(),
            nested(127),
            nested(128),
            r#"{"a":"\ud83d\ude00","b":"\ud83d","c":"\udc00\ud83d"}"#.to_owned(),
            r#"["\u0000", "a\/b", "\"\\"]"#.to_owned(),
            r#"[1e99, 1E+99, -0.0e-99, 123456789012345678901234567890]"#.to_owned(),
            "[\"tab\there\"]".to_owned(),
            "\u{feff}{}".to_owned(),
            " {} ".to_owned(),
            "{}x".to_owned(),
        ] {
            agree(&text).unwrap();
        }
        // Declined, left to serde_json: it refuses this one as out of range.
        assert_eq!(parse(br#"[1e999]"#, &Bump::new()), None);
        assert_eq!(
            parse(format!("[{}]", "9".repeat(101)).as_bytes(), &Bump::new()),
            None
        );
    }
}
