//! PackStream encoding and decoding (Bolt's value serialisation).
//!
//! Decoding is defensive: every size is checked against the bytes that are actually left and nesting
//! depth is bounded, so hostile input yields an error instead of a panic or a huge allocation.

use std::collections::BTreeMap;

use crate::value::{Node, Relationship, Value};

/// Structure tag of a node.
pub const TAG_NODE: u8 = 0x4E;
/// Structure tag of a relationship.
pub const TAG_RELATIONSHIP: u8 = 0x52;
/// Deepest nesting of lists/maps/structures accepted by the decoder.
pub const MAX_DEPTH: usize = 64;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Input ended in the middle of a value.
    #[error("truncated PackStream value")]
    Truncated,
    /// A marker byte that PackStream does not define.
    #[error("unknown PackStream marker 0x{0:02X}")]
    BadMarker(u8),
    /// A string that is not UTF-8.
    #[error("invalid UTF-8 in PackStream string")]
    BadUtf8,
    /// A map key that is not a string.
    #[error("PackStream map key is not a string")]
    BadMapKey,
    /// A size larger than the remaining input could possibly hold.
    #[error("PackStream size {0} exceeds the remaining input")]
    Oversized(u64),
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("PackStream nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    /// Bytes left over after the top-level value.
    #[error("{0} trailing bytes after PackStream value")]
    Trailing(usize),
    /// A node or relationship structure with the wrong field types.
    #[error("malformed {0} structure")]
    BadStructure(&'static str),
}

/// Encodes values; `bolt5` selects the node/relationship layout with element ids.
#[derive(Debug, Clone, Copy, Default)]
pub struct Encoder {
    /// Emit Bolt 5 node/relationship structures (with element ids).
    pub bolt5: bool,
}

impl Encoder {
    /// Appends the encoding of `v` to `out`.
    pub fn encode(&self, v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::Null => out.push(0xC0),
            Value::Bool(false) => out.push(0xC2),
            Value::Bool(true) => out.push(0xC3),
            Value::Int(i) => encode_int(*i, out),
            Value::Float(f) => {
                out.push(0xC1);
                out.extend_from_slice(&f.to_bits().to_be_bytes());
            }
            Value::Bytes(b) => {
                encode_size(b.len(), [None, Some(0xCC), Some(0xCD), Some(0xCE)], out);
                out.extend_from_slice(b);
            }
            Value::String(s) => self.encode_str(s, out),
            Value::List(items) => {
                encode_size(items.len(), [Some(0x90), Some(0xD4), Some(0xD5), Some(0xD6)], out);
                for item in items {
                    self.encode(item, out);
                }
            }
            Value::Map(m) => self.encode_map(m, out),
            Value::Node(n) => self.encode_node(n, out),
            Value::Relationship(r) => self.encode_relationship(r, out),
            Value::Struct { tag, fields } => self.encode_struct(*tag, fields, out),
        }
    }

    /// Encodes a structure header and fields (Bolt messages are structures too).
    pub fn encode_struct(&self, tag: u8, fields: &[Value], out: &mut Vec<u8>) {
        // Only tiny structures exist in Bolt >= 3; longer field lists are truncated to 15.
        let n = fields.len().min(15);
        out.push(0xB0 | n as u8);
        out.push(tag);
        for f in &fields[..n] {
            self.encode(f, out);
        }
    }

    fn encode_str(&self, s: &str, out: &mut Vec<u8>) {
        encode_size(s.len(), [Some(0x80), Some(0xD0), Some(0xD1), Some(0xD2)], out);
        out.extend_from_slice(s.as_bytes());
    }

    fn encode_map(&self, m: &BTreeMap<String, Value>, out: &mut Vec<u8>) {
        encode_size(m.len(), [Some(0xA0), Some(0xD8), Some(0xD9), Some(0xDA)], out);
        for (k, v) in m {
            self.encode_str(k, out);
            self.encode(v, out);
        }
    }

    fn encode_node(&self, n: &Node, out: &mut Vec<u8>) {
        out.push(if self.bolt5 { 0xB4 } else { 0xB3 });
        out.push(TAG_NODE);
        encode_int(n.id, out);
        encode_size(n.labels.len(), [Some(0x90), Some(0xD4), Some(0xD5), Some(0xD6)], out);
        for l in &n.labels {
            self.encode_str(l, out);
        }
        self.encode_map(&n.properties, out);
        if self.bolt5 {
            self.encode_str(&n.id.to_string(), out);
        }
    }

    fn encode_relationship(&self, r: &Relationship, out: &mut Vec<u8>) {
        out.push(if self.bolt5 { 0xB8 } else { 0xB5 });
        out.push(TAG_RELATIONSHIP);
        encode_int(r.id, out);
        encode_int(r.start, out);
        encode_int(r.end, out);
        self.encode_str(&r.rel_type, out);
        self.encode_map(&r.properties, out);
        if self.bolt5 {
            self.encode_str(&r.id.to_string(), out);
            self.encode_str(&r.start.to_string(), out);
            self.encode_str(&r.end.to_string(), out);
        }
    }
}

/// Encodes `v` with the Bolt 4 layout into a fresh buffer.
pub fn to_bytes(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    Encoder::default().encode(v, &mut out);
    out
}

fn encode_int(i: i64, out: &mut Vec<u8>) {
    if (-16..=127).contains(&i) {
        out.push(i as i8 as u8);
    } else if let Ok(v) = i8::try_from(i) {
        out.push(0xC8);
        out.push(v as u8);
    } else if let Ok(v) = i16::try_from(i) {
        out.push(0xC9);
        out.extend_from_slice(&v.to_be_bytes());
    } else if let Ok(v) = i32::try_from(i) {
        out.push(0xCA);
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        out.push(0xCB);
        out.extend_from_slice(&i.to_be_bytes());
    }
}

/// Writes a size header: `markers` = [tiny base, 8-bit, 16-bit, 32-bit].
fn encode_size(len: usize, markers: [Option<u8>; 4], out: &mut Vec<u8>) {
    match markers {
        [Some(tiny), ..] if len < 16 => out.push(tiny | len as u8),
        [_, Some(m8), ..] if len <= u8::MAX as usize => {
            out.push(m8);
            out.push(len as u8);
        }
        [_, _, Some(m16), _] if len <= u16::MAX as usize => {
            out.push(m16);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        [_, _, _, Some(m32)] => {
            out.push(m32);
            out.extend_from_slice(&(len.min(u32::MAX as usize) as u32).to_be_bytes());
        }
        _ => {}
    }
}

/// A cursor over bytes being decoded.
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// Starts decoding `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf, pos: 0 }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// Reads the header of a structure: `(field count, tag)`.
    pub fn struct_header(&mut self) -> Result<(usize, u8), DecodeError> {
        let m = self.byte()?;
        if m & 0xF0 != 0xB0 {
            return Err(DecodeError::BadMarker(m));
        }
        let tag = self.byte()?;
        Ok(((m & 0x0F) as usize, tag))
    }

    /// Decodes one value.
    pub fn value(&mut self) -> Result<Value, DecodeError> {
        self.value_at(0)
    }

    fn checked_len(&self, len: u64, min_item: u64) -> Result<usize, DecodeError> {
        // Each element takes at least `min_item` bytes, so larger counts cannot be honest.
        if len.saturating_mul(min_item) > self.remaining() as u64 {
            return Err(DecodeError::Oversized(len));
        }
        Ok(len as usize)
    }

    fn value_at(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let m = self.byte()?;
        match m {
            0x00..=0x7F => Ok(Value::Int(i64::from(m))),
            0xF0..=0xFF => Ok(Value::Int(i64::from(m as i8))),
            0xC0 => Ok(Value::Null),
            0xC1 => Ok(Value::Float(f64::from_bits(u64::from_be_bytes(self.array()?)))),
            0xC2 => Ok(Value::Bool(false)),
            0xC3 => Ok(Value::Bool(true)),
            0xC8 => Ok(Value::Int(i64::from(self.byte()? as i8))),
            0xC9 => Ok(Value::Int(i64::from(i16::from_be_bytes(self.array()?)))),
            0xCA => Ok(Value::Int(i64::from(i32::from_be_bytes(self.array()?)))),
            0xCB => Ok(Value::Int(i64::from_be_bytes(self.array()?))),
            0xCC..=0xCE => {
                let len = self.size(m - 0xCC)?;
                let len = self.checked_len(len, 1)?;
                Ok(Value::Bytes(self.take(len)?.to_vec()))
            }
            0x80..=0x8F => self.string(u64::from(m & 0x0F)).map(Value::String),
            0xD0..=0xD2 => {
                let len = self.size(m - 0xD0)?;
                self.string(len).map(Value::String)
            }
            0x90..=0x9F => self.list(u64::from(m & 0x0F), depth),
            0xD4..=0xD6 => {
                let len = self.size(m - 0xD4)?;
                self.list(len, depth)
            }
            0xA0..=0xAF => self.map(u64::from(m & 0x0F), depth),
            0xD8..=0xDA => {
                let len = self.size(m - 0xD8)?;
                self.map(len, depth)
            }
            0xB0..=0xBF => {
                let n = (m & 0x0F) as usize;
                let tag = self.byte()?;
                self.structure(tag, n, depth)
            }
            other => Err(DecodeError::BadMarker(other)),
        }
    }

    /// Reads a 1/2/4-byte big-endian size (`width` 0/1/2).
    fn size(&mut self, width: u8) -> Result<u64, DecodeError> {
        Ok(match width {
            0 => u64::from(self.byte()?),
            1 => u64::from(u16::from_be_bytes(self.array()?)),
            _ => u64::from(u32::from_be_bytes(self.array()?)),
        })
    }

    fn string(&mut self, len: u64) -> Result<String, DecodeError> {
        let len = self.checked_len(len, 1)?;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| DecodeError::BadUtf8)
    }

    fn list(&mut self, len: u64, depth: usize) -> Result<Value, DecodeError> {
        let len = self.checked_len(len, 1)?;
        let mut items = Vec::with_capacity(len);
        for _ in 0..len {
            items.push(self.value_at(depth + 1)?);
        }
        Ok(Value::List(items))
    }

    fn map(&mut self, len: u64, depth: usize) -> Result<Value, DecodeError> {
        let len = self.checked_len(len, 2)?;
        let mut m = BTreeMap::new();
        for _ in 0..len {
            let k = match self.value_at(depth + 1)? {
                Value::String(s) => s,
                _ => return Err(DecodeError::BadMapKey),
            };
            let v = self.value_at(depth + 1)?;
            m.insert(k, v);
        }
        Ok(Value::Map(m))
    }

    fn structure(&mut self, tag: u8, n: usize, depth: usize) -> Result<Value, DecodeError> {
        let mut fields = Vec::with_capacity(n);
        for _ in 0..n {
            fields.push(self.value_at(depth + 1)?);
        }
        match tag {
            TAG_NODE if n == 3 || n == 4 => node_from(fields).map(Value::Node),
            TAG_RELATIONSHIP if n == 5 || n == 8 => relationship_from(fields).map(Value::Relationship),
            _ => Ok(Value::Struct { tag, fields }),
        }
    }
}

fn node_from(fields: Vec<Value>) -> Result<Node, DecodeError> {
    let mut it = fields.into_iter();
    match (it.next(), it.next(), it.next()) {
        (Some(Value::Int(id)), Some(Value::List(labels)), Some(Value::Map(properties))) => {
            let labels = labels
                .into_iter()
                .map(|l| match l {
                    Value::String(s) => Ok(s),
                    _ => Err(DecodeError::BadStructure("node")),
                })
                .collect::<Result<_, _>>()?;
            Ok(Node { id, labels, properties })
        }
        _ => Err(DecodeError::BadStructure("node")),
    }
}

fn relationship_from(fields: Vec<Value>) -> Result<Relationship, DecodeError> {
    let mut it = fields.into_iter();
    match (it.next(), it.next(), it.next(), it.next(), it.next()) {
        (
            Some(Value::Int(id)),
            Some(Value::Int(start)),
            Some(Value::Int(end)),
            Some(Value::String(rel_type)),
            Some(Value::Map(properties)),
        ) => Ok(Relationship { id, start, end, rel_type, properties }),
        _ => Err(DecodeError::BadStructure("relationship")),
    }
}

/// Decodes exactly one value from `buf`.
pub fn from_bytes(buf: &[u8]) -> Result<Value, DecodeError> {
    let mut d = Decoder::new(buf);
    let v = d.value()?;
    match d.remaining() {
        0 => Ok(v),
        n => Err(DecodeError::Trailing(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn integer_widths_use_the_smallest_marker() {
        let cases: &[(i64, &[u8])] = &[
            (0, &[0x00]),
            (127, &[0x7F]),
            (-16, &[0xF0]),
            (-17, &[0xC8, 0xEF]),
            (-128, &[0xC8, 0x80]),
            (128, &[0xC9, 0x00, 0x80]),
            (-129, &[0xC9, 0xFF, 0x7F]),
            (32768, &[0xCA, 0x00, 0x00, 0x80, 0x00]),
            (2_147_483_648, &[0xCB, 0, 0, 0, 0, 0x80, 0, 0, 0]),
        ];
        for (i, bytes) in cases {
            assert_eq!(to_bytes(&Value::Int(*i)), *bytes, "encoding {i}");
            assert_eq!(from_bytes(bytes), Ok(Value::Int(*i)), "decoding {i}");
        }
    }

    #[test]
    fn known_encodings() {
        assert_eq!(to_bytes(&Value::Null), [0xC0]);
        assert_eq!(to_bytes(&Value::from("a")), [0x81, b'a']);
        assert_eq!(to_bytes(&Value::Float(1.1)), [0xC1, 0x3F, 0xF1, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9A]);
        let long = "x".repeat(16);
        assert_eq!(&to_bytes(&Value::from(long.as_str()))[..2], [0xD0, 16]);
        let list = Value::List(vec![Value::Int(1); 16]);
        assert_eq!(&to_bytes(&list)[..2], [0xD4, 16]);
    }

    #[test]
    fn hostile_input_is_rejected() {
        // A string claiming 4 GiB with nothing behind it.
        assert_eq!(from_bytes(&[0xD2, 0xFF, 0xFF, 0xFF, 0xFF]), Err(DecodeError::Oversized(u64::from(u32::MAX))));
        assert!(from_bytes(&[0xD6, 0xFF, 0xFF, 0xFF, 0xFF]).is_err());
        assert_eq!(from_bytes(&[0xC7]), Err(DecodeError::BadMarker(0xC7)));
        assert_eq!(from_bytes(&[0xA1, 0x01, 0x01]), Err(DecodeError::BadMapKey));
        assert_eq!(from_bytes(&[0xC0, 0xC0]), Err(DecodeError::Trailing(1)));
        assert_eq!(from_bytes(&[0xCB, 0x00]), Err(DecodeError::Truncated));
        let deep = vec![0x91; MAX_DEPTH + 2];
        assert_eq!(from_bytes(&deep), Err(DecodeError::TooDeep));
    }

    #[test]
    fn nodes_in_both_layouts() {
        let n =
            Node { id: 7, labels: vec!["L".into()], properties: BTreeMap::from([("k".to_string(), Value::Int(1))]) };
        for bolt5 in [false, true] {
            let mut out = Vec::new();
            Encoder { bolt5 }.encode(&Value::Node(n.clone()), &mut out);
            assert_eq!(out[0], if bolt5 { 0xB4 } else { 0xB3 });
            assert_eq!(from_bytes(&out), Ok(Value::Node(n.clone())));
        }
    }

    pub(crate) fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            (-200i64..200).prop_map(Value::Int),
            any::<f64>().prop_map(Value::Float),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Value::Bytes),
            ".{0,40}".prop_map(Value::String),
            "[a-z]{250,260}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 20, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..20).prop_map(Value::List),
                proptest::collection::btree_map("[a-z]{0,5}", inner.clone(), 0..20).prop_map(Value::Map),
                (
                    any::<i64>(),
                    proptest::collection::vec("[A-Za-z]{1,6}", 0..3),
                    proptest::collection::btree_map("[a-z]{1,5}", inner, 0..4)
                )
                    .prop_map(|(id, labels, properties)| Value::Node(Node { id, labels, properties })),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trip(v in arb_value()) {
            let bytes = to_bytes(&v);
            let back = from_bytes(&bytes).unwrap();
            prop_assert!(back.same_as(&v), "{:?} != {:?}", back, v);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = from_bytes(&bytes);
        }
    }
}
