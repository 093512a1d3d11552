//! Tolerant readers over `serde_json::Value`: operators send numbers as strings and strings as numbers,
//! lists as single objects, and fields that may be missing. These helpers accept all of that.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::de::DeserializeSeed;
use serde_json::Value;

use super::ParseError;

/// Deepest nesting accepted. MongoDB refuses documents nested more than 100 levels; real callbacks use < 10.
pub const MAX_DEPTH: usize = 32;

/// Parses a body into a JSON object, refusing non-objects, absurd nesting and duplicate keys — in one
/// pass over the bytes.
pub fn parse_object(body: &[u8]) -> Result<Value, ParseError> {
    let found = Found::default();
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = Strict {
        depth: 0,
        found: &found,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value))
    .map_err(|error| ParseError::InvalidJson(error.to_string()))?;
    if !value.is_object() {
        return Err(ParseError::NotAnObject);
    }
    if found.too_deep.get() {
        return Err(ParseError::TooDeep { max: MAX_DEPTH });
    }
    // serde_json keeps the last of repeated keys silently; another parser (or a signature over the raw
    // bytes) may see the first. An ambiguous callback is refused rather than guessed at.
    if let Some(key) = found.duplicate.take() {
        return Err(ParseError::DuplicateKey(format!("`{key}` appears twice")));
    }
    Ok(value)
}

/// What the strict parse noticed on the way; reported once the whole body parsed, so that a syntax error
/// anywhere still reads as one.
#[derive(Default)]
struct Found {
    too_deep: std::cell::Cell<bool>,
    /// The first repeated key.
    duplicate: std::cell::RefCell<Option<String>>,
}

/// Builds a `Value` as serde_json's own deserializer does, noting nesting beyond [`MAX_DEPTH`] and
/// repeated keys on the way.
#[derive(Clone, Copy)]
struct Strict<'a> {
    depth: usize,
    found: &'a Found,
}

/// How serde_json (with `arbitrary_precision`) hands a number to a visitor: a map with this one key.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Strict<'_> {
    fn deeper(self) -> Self {
        if self.depth + 1 > MAX_DEPTH {
            self.found.too_deep.set(true);
        }
        Self {
            depth: self.depth + 1,
            found: self.found,
        }
    }
}

impl<'de> serde::de::Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, flag: bool) -> Result<Value, E> {
        Ok(Value::Bool(flag))
    }

    fn visit_i64<E>(self, number: i64) -> Result<Value, E> {
        Ok(Value::from(number))
    }

    fn visit_u64<E>(self, number: u64) -> Result<Value, E> {
        Ok(Value::from(number))
    }

    fn visit_f64<E>(self, number: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(number).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, text: &str) -> Result<Value, E> {
        Ok(Value::String(text.to_owned()))
    }

    fn visit_string<E>(self, text: String) -> Result<Value, E> {
        Ok(Value::String(text))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.deeper();
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            return Ok(Value::Object(serde_json::Map::new()));
        };
        if first == NUMBER_TOKEN {
            // A number: its exact text is kept.
            let text: String = map.next_value()?;
            return text
                .parse::<serde_json::Number>()
                .map(Value::Number)
                .map_err(serde::de::Error::custom);
        }
        let inner = self.deeper();
        let mut fields = serde_json::Map::new();
        fields.insert(first, map.next_value_seed(inner)?);
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(inner)?;
            if fields.contains_key(&key) {
                self.found
                    .duplicate
                    .borrow_mut()
                    .get_or_insert_with(|| key.clone());
            }
            fields.insert(key, value);
        }
        Ok(Value::Object(fields))
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

/// An exact decimal from a JSON number (its exact text: `1000`, `1000.00`, `1e3`) or from a string in
/// the one form every operator documents: digits with an optional decimal point (`"1000"`, `"1000.00"`).
/// Anything else (`"1,000.00"`, `"1.000,50"`, `"KES 100"`, `"1e3"` as text) is not guessed at: one reading
/// of a thousands separator is another's decimal comma.
pub fn decimal(value: Option<&Value>) -> Option<Decimal> {
    match value? {
        Value::Number(number) => {
            let text = number.to_string();
            Decimal::from_str(&text)
                .or_else(|_| Decimal::from_scientific(&text))
                .ok()
        }
        Value::String(text) => {
            let text = text.trim();
            let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
            let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
            (digits(whole) && digits(fraction))
                .then(|| Decimal::from_str(text).ok())
                .flatten()
        }
        _ => None,
    }
}

/// A list that may arrive as an array, a single object, or not at all.
pub fn items(value: Option<&Value>) -> Vec<&Value> {
    match value {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(item @ Value::Object(_)) => vec![item],
        _ => Vec::new(),
    }
}

/// An amount field: absent, null or empty is `None`; anything else must be a decimal the operators'
/// format allows (see [`decimal`]), within range and not negative, or the callback is refused with the
/// value it held (an amount we cannot read exactly is never stored as a guess).
pub fn amount(value: Option<&Value>, field: &'static str) -> Result<Option<Decimal>, ParseError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(present @ (Value::String(_) | Value::Number(_))) => decimal(Some(present))
            .filter(|amount| !amount.is_sign_negative())
            .map(Some)
            .ok_or_else(|| {
                let mut value = text(Some(present)).unwrap_or_default();
                if value.len() > 40 {
                    value = format!("{}…", value.chars().take(40).collect::<String>());
                }
                ParseError::InvalidAmount { field, value }
            }),
        Some(_) => Err(ParseError::InvalidField(field)),
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
        let exponent: Value = serde_json::from_str("1e3").unwrap();
        assert_eq!(decimal(Some(&exponent)).unwrap(), Decimal::from(1000));
        assert_eq!(
            decimal(Some(&json!(" 1000 "))).unwrap(),
            Decimal::from(1000)
        );
        // Separators and words are never guessed at.
        for refused in [
            "1,500.00", "1.000,50", "1 000", "KES 100", "1e3", "abc", ".5", "5.", "+5",
        ] {
            assert_eq!(decimal(Some(&json!(refused))), None, "{refused}");
        }
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
        let refused = |value: &str| ParseError::InvalidAmount {
            field: "amount",
            value: value.to_owned(),
        };
        assert_eq!(amount(Some(&json!("abc")), "amount"), Err(refused("abc")));
        assert_eq!(
            amount(Some(&json!("1.000,50")), "amount"),
            Err(refused("1.000,50"))
        );
        assert_eq!(amount(Some(&json!(-5)), "amount"), Err(refused("-5")));
        assert_eq!(
            amount(Some(&json!({"v": 1})), "amount"),
            Err(ParseError::InvalidField("amount"))
        );
        let huge: Value = serde_json::from_str("1e400").unwrap();
        assert!(matches!(
            amount(Some(&huge), "amount"),
            Err(ParseError::InvalidAmount {
                field: "amount",
                ..
            })
        ));
    }

    #[test]
    fn parse_object_keeps_numbers_as_their_exact_text() {
        let value =
            parse_object(br#"{"a": 1000.10, "b": [0.1, 254708374149, -5], "c": 1e400}"#).unwrap();
        assert_eq!(value["a"].to_string(), "1000.10");
        assert_eq!(value["b"].to_string(), "[0.1,254708374149,-5]");
        assert_eq!(
            value,
            serde_json::from_slice::<Value>(
                br#"{"a": 1000.10, "b": [0.1, 254708374149, -5], "c": 1e400}"#
            )
            .unwrap(),
            "the same value serde_json builds"
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
