//! The body of `POST /score`, handled the way detector-api's `JsonObject` extractor and `score`
//! route handle it (crates/detector-api/src/body.rs, routes/score.rs): UTF-8 first, then
//! `serde_json::Value`, then the object's `"text"`, which must be a string.
//!
//! The service is a binary crate and exposes none of this, so the steps are repeated here on the
//! same types (serde_json's `Value` and `Map`, same version through Cargo.lock). What is checked:
//! no input panics or overflows the stack (deep nesting hits serde_json's recursion limit), and
//! an accepted text survives being written back as a JSON string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The outcome the service maps to a status: 200 path, 400 invalid_utf8/invalid_json/
/// invalid_body/missing_text/invalid_text, 422 empty_text.
#[derive(Debug)]
enum Outcome {
    Text(String),
    InvalidUtf8,
    InvalidJson,
    NotAnObject,
    MissingText,
    TextNotString,
    EmptyText,
}

fn handle(bytes: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Outcome::InvalidUtf8;
    };
    let mut object = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Outcome::NotAnObject,
        Err(error) => {
            // The message goes to the client: it must name a position, never echo the input.
            let message = error.to_string();
            assert!(message.len() < 200, "long error message: {message}");
            return Outcome::InvalidJson;
        }
    };
    match object.remove("text") {
        None => Outcome::MissingText,
        Some(Value::String(text)) if text.trim().is_empty() => Outcome::EmptyText,
        Some(Value::String(text)) => Outcome::Text(text),
        Some(_) => Outcome::TextNotString,
    }
}

fuzz_target!(|bytes: &[u8]| {
    if let Outcome::Text(text) = handle(bytes) {
        // Valid UTF-8 by construction (lone surrogates are refused by the parser).
        let written = serde_json::to_string(&serde_json::json!({ "text": text })).unwrap();
        match handle(written.as_bytes()) {
            Outcome::Text(again) => assert_eq!(again, text),
            other => panic!("re-written body was handled as {other:?}"),
        }
    }
});
