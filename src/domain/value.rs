//! The value holder mognet stores for a result's return value or exception.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// How the `contents` of a value hash are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Plain UTF-8 JSON (`encoding` is `null` or absent).
    Identity,
    /// A gzip member (`encoding` is exactly `"gzip"`).
    Gzip,
}

/// mognet's `ResultValueHolder`: `{"value_type":"module:Class","raw_value":…}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueHolder {
    /// `module:ClassName` of the Python value.
    pub value_type: String,
    /// The value as JSON.
    pub raw_value: Box<RawValue>,
}

/// The `value_type` of mognet's exception records.
pub const EXCEPTION_INFO_TYPE: &str = "mognet.model.result:_ExceptionInfo";

/// The `value_type`s a client may upload: plain JSON types that every Python reader can import,
/// and exception records (whose pickle is always dropped, so no client data reaches `pickle.loads`).
pub const ALLOWED_VALUE_TYPES: [&str; 8] = [
    "builtins:NoneType",
    "builtins:bool",
    "builtins:int",
    "builtins:float",
    "builtins:str",
    "builtins:list",
    "builtins:dict",
    EXCEPTION_INFO_TYPE,
];

/// The `builtins:` type Python gives to a JSON document once loaded.
pub fn builtin_type_of(raw: &RawValue) -> &'static str {
    let text = raw.get().trim_start();
    match text.as_bytes().first() {
        Some(b'n') => "builtins:NoneType",
        Some(b't' | b'f') => "builtins:bool",
        Some(b'"') => "builtins:str",
        Some(b'[') => "builtins:list",
        Some(b'{') => "builtins:dict",
        _ if text.contains(['.', 'e', 'E']) => "builtins:float",
        _ => "builtins:int",
    }
}

impl ValueHolder {
    /// Wraps any JSON document as the matching `builtins:` value.
    pub fn from_json(raw: Box<RawValue>) -> Self {
        Self {
            value_type: builtin_type_of(&raw).to_owned(),
            raw_value: raw,
        }
    }

    /// The holder as compact JSON, keys in mognet's order.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"value_type\":{},\"raw_value\":{}}}",
            serde_json::Value::String(self.value_type.clone()),
            self.raw_value.get()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn json_documents_get_the_python_type_they_load_as() {
        for (json, ty) in [
            ("null", "builtins:NoneType"),
            ("true", "builtins:bool"),
            ("42", "builtins:int"),
            ("-1180591620717411303424", "builtins:int"),
            ("4.5", "builtins:float"),
            ("1e3", "builtins:float"),
            ("\"x\"", "builtins:str"),
            ("[1]", "builtins:list"),
            ("{\"a\":1}", "builtins:dict"),
        ] {
            assert_eq!(builtin_type_of(&raw(json)), ty, "{json}");
        }
    }

    #[test]
    fn holders_serialise_compactly_in_mognet_key_order() {
        let h = ValueHolder::from_json(raw("{\"total\": 42.5}"));
        assert_eq!(
            h.to_json(),
            "{\"value_type\":\"builtins:dict\",\"raw_value\":{\"total\": 42.5}}"
        );
    }
}
