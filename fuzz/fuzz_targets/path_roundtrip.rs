//! Any text: `parse_path` never panics, and what parses round-trips through its
//! canonical form. Errors must point inside the input and render.

#![no_main]

use libfuzzer_sys::fuzz_target;
use scimguard::scim::parse_path;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    match parse_path(input) {
        Ok(path) => {
            let text = path.to_string();
            let again = parse_path(&text)
                .unwrap_or_else(|e| panic!("canonical {text:?} of {input:?} fails: {e}"));
            assert_eq!(again, path, "{input:?} -> {text:?}");
            assert_eq!(again.to_string(), text);
        }
        Err(e) => {
            assert!(e.offset <= input.len() && input.is_char_boundary(e.offset));
            let _ = e.render(input);
        }
    }
});
