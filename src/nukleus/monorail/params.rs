//! Query parameters: which items a `query`, `watch` or `get` means. Pure.
//!
//! `params` is a JSON object; an item matches when every property of it
//! matches: a plain value must equal the item's property, and an object
//! whose single key starts with `$` is an operator:
//!
//! | operator | matches when the item's property |
//! |---|---|
//! | `{"$ne": v}` | is missing or differs from `v` |
//! | `{"$in": [v, ..]}` | equals one of the values |
//! | `{"$gt": v}`, `$gte`, `$lt`, `$lte` | compares so with `v` (both numbers or both strings) |
//! | `{"$exists": bool}` | is present (`true`) or missing (`false`) |
//!
//! `{}` matches every item.

use std::cmp::Ordering;

use serde_json::{Map, Value};

/// Validated query parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Params(Map<String, Value>);

/// Why parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// `params` is not a JSON object.
    #[error("params must be a JSON object")]
    NotAnObject,
    /// An operator that is not in the table, or with the wrong operand.
    #[error("property {0:?}: unknown operator or bad operand")]
    BadOperator(String),
}

impl Params {
    /// Checks `value` (the `params` property); `None` means `{}`.
    pub fn parse(value: Option<&Value>) -> Result<Params, ParamsError> {
        let map = match value {
            None => Map::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(_) => return Err(ParamsError::NotAnObject),
        };
        for (key, wanted) in &map {
            if let Some((op, operand)) = operator(wanted) {
                let ok = match op {
                    "$ne" => true,
                    "$in" => operand.is_array(),
                    "$gt" | "$gte" | "$lt" | "$lte" => operand.is_number() || operand.is_string(),
                    "$exists" => operand.is_boolean(),
                    _ => false,
                };
                if !ok {
                    return Err(ParamsError::BadOperator(key.clone()));
                }
            }
        }
        Ok(Params(map))
    }

    /// `{}`: every item.
    pub fn all() -> Params {
        Params(Map::new())
    }

    /// The parameters as given.
    pub fn as_value(&self) -> Value {
        Value::Object(self.0.clone())
    }

    /// The plain value wanted for `field`, if any (not an operator).
    pub fn equal_to(&self, field: &str) -> Option<&Value> {
        self.0.get(field).filter(|v| operator(v).is_none())
    }

    /// Whether `item` matches every property.
    pub fn matches(&self, item: &Value) -> bool {
        let Some(item) = item.as_object() else {
            return false;
        };
        self.0.iter().all(|(key, wanted)| {
            let have = item.get(key);
            match operator(wanted) {
                None => have == Some(wanted),
                Some((op, operand)) => apply(op, operand, have),
            }
        })
    }
}

/// `{"$op": operand}` as `("$op", operand)`.
fn operator(value: &Value) -> Option<(&str, &Value)> {
    let map = value.as_object()?;
    if map.len() != 1 {
        return None;
    }
    let (key, operand) = map.iter().next()?;
    key.starts_with('$').then_some((key.as_str(), operand))
}

fn apply(op: &str, operand: &Value, have: Option<&Value>) -> bool {
    match op {
        "$ne" => have != Some(operand),
        "$in" => operand
            .as_array()
            .is_some_and(|values| have.is_some_and(|h| values.contains(h))),
        "$exists" => operand.as_bool() == Some(have.is_some()),
        "$gt" => compare(have, operand) == Some(Ordering::Greater),
        "$gte" => matches!(
            compare(have, operand),
            Some(Ordering::Greater | Ordering::Equal)
        ),
        "$lt" => compare(have, operand) == Some(Ordering::Less),
        "$lte" => matches!(
            compare(have, operand),
            Some(Ordering::Less | Ordering::Equal)
        ),
        _ => false,
    }
}

fn compare(have: Option<&Value>, operand: &Value) -> Option<Ordering> {
    match (have?, operand) {
        (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: Value) -> Params {
        Params::parse(Some(&v)).unwrap()
    }

    #[test]
    fn equality_and_operators() {
        let item = json!({"id": 1, "state": "up", "load": 0.5});
        assert!(params(json!({})).matches(&item));
        assert!(params(json!({"state": "up"})).matches(&item));
        assert!(!params(json!({"state": "down"})).matches(&item));
        assert!(params(json!({"load": {"$gt": 0.1, }, "id": {"$in": [1, 2]}})).matches(&item));
        assert!(!params(json!({"load": {"$lte": 0.1}})).matches(&item));
        assert!(params(json!({"gone": {"$exists": false}})).matches(&item));
        assert!(params(json!({"state": {"$ne": "down"}})).matches(&item));
        assert!(!params(json!({"state": {"$gt": 3}})).matches(&item));
    }

    #[test]
    fn bad_params_are_refused() {
        assert_eq!(
            Params::parse(Some(&json!([1]))),
            Err(ParamsError::NotAnObject)
        );
        assert!(matches!(
            Params::parse(Some(&json!({"a": {"$regex": "x"}}))),
            Err(ParamsError::BadOperator(_))
        ));
        assert!(Params::parse(Some(&json!({"a": {"$in": 3}}))).is_err());
        assert_eq!(Params::parse(None).unwrap().as_value(), json!({}));
    }
}
