//! The value model shared by PackStream, the Cypher engine, storage and the client.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A PackStream / Cypher value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A 64-bit signed integer (every PackStream integer width decodes to this).
    Int(i64),
    /// A 64-bit float, stored as its bit pattern in files so NaN and -0.0 survive JSON.
    Float(#[serde(with = "float_bits")] f64),
    /// A byte array.
    Bytes(Vec<u8>),
    /// A UTF-8 string.
    String(String),
    /// A list.
    List(Vec<Value>),
    /// A map with string keys (ordered, so iteration never depends on hashing).
    Map(BTreeMap<String, Value>),
    /// A graph node.
    Node(Node),
    /// A graph relationship.
    Relationship(Relationship),
    /// Any other PackStream structure (dates, points, ...) passed through untouched.
    Struct {
        /// The structure's tag byte.
        tag: u8,
        /// Its fields.
        fields: Vec<Value>,
    },
}

/// A node as returned to clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Internal id (Memgraph's `id(n)`).
    pub id: i64,
    /// Labels in creation order.
    pub labels: Vec<String>,
    /// Properties.
    pub properties: BTreeMap<String, Value>,
}

/// A relationship as returned to clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Relationship {
    /// Internal id.
    pub id: i64,
    /// Start node id.
    pub start: i64,
    /// End node id.
    pub end: i64,
    /// Relationship type.
    pub rel_type: String,
    /// Properties.
    pub properties: BTreeMap<String, Value>,
}

impl Value {
    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The integer inside, if this is an integer.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The map inside, if this is a map.
    pub fn as_map(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The list inside, if this is a list.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The node inside, if this is a node.
    pub fn as_node(&self) -> Option<&Node> {
        match self {
            Value::Node(n) => Some(n),
            _ => None,
        }
    }

    /// Whether this is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Cypher's type name, used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::Bytes(_) => "bytes",
            Value::String(_) => "string",
            Value::List(_) => "list",
            Value::Map(_) => "map",
            Value::Node(_) => "node",
            Value::Relationship(_) => "relationship",
            Value::Struct { .. } => "structure",
        }
    }

    /// Equality as the fake's tests want it: floats compare by bit pattern, so NaN equals itself.
    pub fn same_as(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::List(a), Value::List(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_as(y)),
            (Value::Map(a), Value::Map(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|((ka, va), (kb, vb))| ka == kb && va.same_as(vb))
            }
            (Value::Node(a), Value::Node(b)) => {
                a.id == b.id
                    && a.labels == b.labels
                    && Value::Map(a.properties.clone()).same_as(&Value::Map(b.properties.clone()))
            }
            (Value::Struct { tag: ta, fields: fa }, Value::Struct { tag: tb, fields: fb }) => {
                ta == tb && Value::List(fa.clone()).same_as(&Value::List(fb.clone()))
            }
            _ => self == other,
        }
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<u16> for Value {
    fn from(v: u16) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::String(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::String(v)
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v)
    }
}
impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Self {
        Value::List(v)
    }
}
impl From<BTreeMap<String, Value>> for Value {
    fn from(v: BTreeMap<String, Value>) -> Self {
        Value::Map(v)
    }
}
impl From<Node> for Value {
    fn from(v: Node) -> Self {
        Value::Node(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Builds a `Value::Map` from `(key, value)` pairs; handy in tests and handlers.
pub fn map<K: Into<String>, V: Into<Value>>(entries: impl IntoIterator<Item = (K, V)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
}

mod float_bits {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(v.to_bits())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(f64::from_bits(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_nan_and_negative_zero() {
        let v = Value::List(vec![Value::Float(f64::NAN), Value::Float(-0.0)]);
        let text = serde_json::to_string(&v).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert!(v.same_as(&back));
        assert!(!Value::Float(0.0).same_as(&Value::Float(-0.0)));
    }

    #[test]
    fn conversions() {
        assert_eq!(Value::from(3i32), Value::Int(3));
        assert_eq!(Value::from(None::<i64>), Value::Null);
        assert_eq!(map([("a", 1i64)]).as_map().and_then(|m| m.get("a")).cloned(), Some(Value::Int(1)));
    }
}
