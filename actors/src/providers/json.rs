//! Tolerant readers over `serde_json::Value`: operators send numbers as strings and strings as numbers,
//! lists as single objects, and fields that may be missing. These helpers accept all of that.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;

use super::ParseError;

/// Deepest nesting accepted. MongoDB refuses documents nested more than 100 levels; real callbacks use < 10.
pub const MAX_DEPTH: usize = 32;

/// Parses a body into a JSON object, refusing non-objects and absurd nesting.
pub fn parse_object(body: &[u8]) -> Result<Value, ParseError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|error| ParseError::InvalidJson(error.to_string()))?;
    if !value.is_object() {
        return Err(ParseError::NotAnObject);
    }
    if depth(&value) > MAX_DEPTH {
        return Err(ParseError::TooDeep { max: MAX_DEPTH });
    }
    Ok(value)
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
