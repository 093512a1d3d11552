//! Tolerant readers over `serde_json::Value`: operators send numbers as strings and strings as numbers,
//! lists as single objects, and fields that may be missing. These helpers accept all of that.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;

use super::ParseError;

/// Deepest nesting accepted. MongoDB refuses documents nested more than 100 levels; real callbacks use < 10.
pub const MAX_DEPTH: usize = 32;

/// Parses a body into a JSON object, refusing non-objects, absurd nesting and duplicate keys.
pub fn parse_object(body: &[u8]) -> Result<Value, ParseError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|error| ParseError::InvalidJson(error.to_string()))?;
    if !value.is_object() {
        return Err(ParseError::NotAnObject);
    }
    if depth(&value) > MAX_DEPTH {
        return Err(ParseError::TooDeep { max: MAX_DEPTH });
    }
    // serde_json keeps the last of repeated keys silently; another parser (or a signature over the raw
    // bytes) may see the first. An ambiguous callback is refused rather than guessed at.
    serde_json::from_slice::<NoDuplicateKeys>(body)
        .map_err(|error| ParseError::DuplicateKey(error.to_string()))?;
    Ok(value)
}

/// A walk over a JSON document that fails on the first object with a repeated key.
struct NoDuplicateKeys;

impl<'de> serde::Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NoDuplicateKeysVisitor)
    }
}

struct NoDuplicateKeysVisitor;

impl<'de> serde::de::Visitor<'de> for NoDuplicateKeysVisitor {
    type Value = NoDuplicateKeys;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<NoDuplicateKeys, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_i64<E>(self, _: i64) -> Result<NoDuplicateKeys, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_u64<E>(self, _: u64) -> Result<NoDuplicateKeys, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_f64<E>(self, _: f64) -> Result<NoDuplicateKeys, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_str<E>(self, _: &str) -> Result<NoDuplicateKeys, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_unit<E>(self) -> Result<NoDuplicateKeys, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> Result<NoDuplicateKeys, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(NoDuplicateKeys)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<NoDuplicateKeys, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value::<NoDuplicateKeys>()?;
            if !seen.insert(key) {
                return Err(serde::de::Error::custom("a key appears twice"));
            }
        }
        Ok(NoDuplicateKeys)
    }
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// A scalar as text: strings as they are (trimmed), numbers in their exact JSON text, booleans as words.
/// Empty strings, null, arrays and objects give `None`.
pub fn text(value: Option<&Value>) -> Option<String> {
    let text = match value? {
        Value::String(text) => text.trim().to_owned(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

/// The first field among `names` that holds usable text.
pub fn first_text(object: &Value, names: &[&str]) -> Option<String> {
    names.iter().find_map(|name| text(object.get(name)))
}

/// A required identifying field.
pub fn required_text(object: &Value, name: &'static str) -> Result<String, ParseError> {
    text(object.get(name)).ok_or(ParseError::MissingField(name))
}

/// An exact decimal from a JSON number or string (`1000`, `1000.00`, `"1000.00"`, `"1e3"`, `"1,000.00"`).
pub fn decimal(value: Option<&Value>) -> Option<Decimal> {
    let text = text(value)?.replace(',', "");
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .ok()
}

/// A list that may arrive as an array, a single object, or not at all.
pub fn items(value: Option<&Value>) -> Vec<&Value> {
    match value {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(item @ Value::Object(_)) => vec![item],
        _ => Vec::new(),
    }
}

/// An amount field: absent, null or empty is `None`; anything else must be a decimal within range, or the
/// callback is refused (an amount we cannot read exactly is never stored as a guess).
pub fn amount(value: Option<&Value>, field: &'static str) -> Result<Option<Decimal>, ParseError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        present => decimal(present)
            .map(Some)
            .ok_or(ParseError::InvalidField(field)),
    }
}

/// In a list of `{<name_field>: name, <value_field>: value}` pairs, the value for `name` (if it has one).
pub fn named_value<'a>(
    pairs: &[&'a Value],
    name_field: &str,
    value_field: &str,
    name: &str,
) -> Option<&'a Value> {
    pairs
        .iter()
        .find(|pair| pair.get(name_field).and_then(Value::as_str) == Some(name))
        .and_then(|pair| pair.get(value_field))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_accepts_strings_numbers_and_booleans() {
        assert_eq!(text(Some(&json!(" abc "))), Some("abc".into()));
        assert_eq!(
            text(Some(&json!(254708374149_u64))),
            Some("254708374149".into())
        );
        assert_eq!(text(Some(&json!(true))), Some("true".into()));
        assert_eq!(text(Some(&json!(""))), None);
        assert_eq!(text(Some(&json!(null))), None);
        assert_eq!(text(Some(&json!({"a": 1}))), None);
        assert_eq!(text(None), None);
    }

    #[test]
    fn decimal_is_exact_for_numbers_and_strings() {
        let parsed: Value =
            serde_json::from_str(r#"{"a": 1000.10, "b": "1000.10", "c": 0.1}"#).unwrap();
        assert_eq!(
            decimal(parsed.get("a")),
            Some(Decimal::from_str("1000.10").unwrap())
        );
        assert_eq!(
            decimal(parsed.get("b")),
            Some(Decimal::from_str("1000.10").unwrap())
        );
        // 0.1 has no exact f64: the exact JSON text must survive.
        assert_eq!(decimal(parsed.get("c")).unwrap().to_string(), "0.1");
        assert_eq!(
            decimal(Some(&json!("1,500.00"))).unwrap().to_string(),
            "1500.00"
        );
        assert_eq!(decimal(Some(&json!("1e3"))).unwrap(), Decimal::from(1000));
        assert_eq!(decimal(Some(&json!("abc"))), None);
    }

    #[test]
    fn items_accepts_an_array_a_single_object_or_nothing() {
        let list = json!([{"Name": "A"}, {"Name": "B"}]);
        let single = json!({"Name": "A"});
        assert_eq!(items(Some(&list)).len(), 2);
        assert_eq!(items(Some(&single)).len(), 1);
        assert!(items(Some(&json!("x"))).is_empty());
        assert!(items(None).is_empty());
    }

    #[test]
    fn named_value_skips_pairs_without_a_value() {
        let list = json!([{"Name": "Balance"}, {"Name": "Amount", "Value": 5}]);
        let pairs = items(Some(&list));
        assert_eq!(
            named_value(&pairs, "Name", "Value", "Amount"),
            Some(&json!(5))
        );
        assert_eq!(named_value(&pairs, "Name", "Value", "Balance"), None);
        assert_eq!(named_value(&pairs, "Name", "Value", "Missing"), None);
    }

    #[test]
    fn amount_refuses_values_it_cannot_read_exactly() {
        assert_eq!(amount(None, "amount"), Ok(None));
        assert_eq!(amount(Some(&json!(null)), "amount"), Ok(None));
        assert_eq!(amount(Some(&json!("")), "amount"), Ok(None));
        assert_eq!(
            amount(Some(&json!("12.50")), "amount"),
            Ok(Some(Decimal::from_str("12.50").unwrap()))
        );
        assert_eq!(
            amount(Some(&json!("abc")), "amount"),
            Err(ParseError::InvalidField("amount"))
        );
        assert_eq!(
            amount(Some(&json!({"v": 1})), "amount"),
            Err(ParseError::InvalidField("amount"))
        );
        let huge: Value = serde_json::from_str("1e400").unwrap();
        assert_eq!(
            amount(Some(&huge), "amount"),
            Err(ParseError::InvalidField("amount"))
        );
    }

    #[test]
    fn parse_object_refuses_duplicate_keys_at_any_depth() {
        assert!(matches!(
            parse_object(br#"{"a": 1, "a": 2}"#),
            Err(ParseError::DuplicateKey(_))
        ));
        assert!(matches!(
            parse_object(br#"{"a": [{"b": 1, "b": 1}]}"#),
            Err(ParseError::DuplicateKey(_))
        ));
        assert!(parse_object(br#"{"a": {"a": 1}, "b": [{"a": 1}, {"a": 2.50}]}"#).is_ok());
    }

    #[test]
    fn parse_object_refuses_non_objects_and_deep_nesting() {
        assert_eq!(parse_object(b"[1]"), Err(ParseError::NotAnObject));
        assert_eq!(parse_object(b"null"), Err(ParseError::NotAnObject));
        assert!(matches!(
            parse_object(b"{"),
            Err(ParseError::InvalidJson(_))
        ));
        let deep = format!("{}1{}", r#"{"a":"#.repeat(40), "}".repeat(40));
        assert_eq!(
            parse_object(deep.as_bytes()),
            Err(ParseError::TooDeep { max: MAX_DEPTH })
        );
        assert!(parse_object(br#"{"a": {"b": [1, 2]}}"#).is_ok());
    }
}
