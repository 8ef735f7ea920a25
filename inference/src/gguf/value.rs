//! Metadata values: every GGUF value type, arrays kept as validated raw byte ranges and decoded on
//! demand so that a 50k-entry vocabulary costs no allocation until someone asks for it.

use super::error::GgufError;
use super::reader::Reader;

/// Deepest array nesting accepted (GGUF files in use nest at most once).
const MAX_NESTING: u32 = 4;

/// The GGUF metadata value types, with their on-disk ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl ValueType {
    pub fn from_id(id: u32, offset: usize) -> Result<Self, GgufError> {
        Ok(match id {
            0 => Self::U8,
            1 => Self::I8,
            2 => Self::U16,
            3 => Self::I16,
            4 => Self::U32,
            5 => Self::I32,
            6 => Self::F32,
            7 => Self::Bool,
            8 => Self::String,
            9 => Self::Array,
            10 => Self::U64,
            11 => Self::I64,
            12 => Self::F64,
            type_id => return Err(GgufError::UnknownValueType { offset, type_id }),
        })
    }

    /// Encoded size of a fixed-size value; `None` for strings and arrays.
    fn fixed_size(self) -> Option<u64> {
        match self {
            Self::U8 | Self::I8 | Self::Bool => Some(1),
            Self::U16 | Self::I16 => Some(2),
            Self::U32 | Self::I32 | Self::F32 => Some(4),
            Self::U64 | Self::I64 | Self::F64 => Some(8),
            Self::String | Self::Array => None,
        }
    }

    /// Smallest possible encoding of one value, used to bound counts before walking them.
    fn min_size(self) -> u64 {
        match self.fixed_size() {
            Some(size) => size,
            // A string is at least its u64 length; an array its u32 type and u64 count.
            None if self == Self::String => 8,
            None => 12,
        }
    }
}

/// One decoded metadata value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(&'a str),
    Array(ArrayValue<'a>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value<'_> {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::U8(_) => "u8",
            Self::I8(_) => "i8",
            Self::U16(_) => "u16",
            Self::I16(_) => "i16",
            Self::U32(_) => "u32",
            Self::I32(_) => "i32",
            Self::F32(_) => "f32",
            Self::Bool(_) => "bool",
            Self::String(_) => "string",
            Self::Array(_) => "array",
            Self::U64(_) => "u64",
            Self::I64(_) => "i64",
            Self::F64(_) => "f64",
        }
    }

    /// The value as an unsigned integer when it is any integer type holding a non-negative value.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a signed integer when it is any integer type that fits in i64.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Self::U64(v) => i64::try_from(v).ok(),
            Self::I8(v) => Some(v.into()),
            Self::I16(v) => Some(v.into()),
            Self::I32(v) => Some(v.into()),
            Self::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }
}

/// An array value: its element type, count and the validated bytes that encode its elements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArrayValue<'a> {
    element_type: ValueType,
    len: usize,
    bytes: &'a [u8],
}

impl<'a> ArrayValue<'a> {
    pub fn element_type(&self) -> ValueType {
        self.element_type
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements in order. The bytes were validated when the file was parsed, so decoding
    /// cannot fail; the iterator ends early rather than panic should that ever not hold.
    pub fn iter(&self) -> ArrayIter<'a> {
        ArrayIter {
            reader: Reader::new(self.bytes),
            element_type: self.element_type,
            left: self.len,
        }
    }
}

/// Iterator over an [`ArrayValue`]'s elements.
pub struct ArrayIter<'a> {
    reader: Reader<'a>,
    element_type: ValueType,
    left: usize,
}

impl<'a> Iterator for ArrayIter<'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Value<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        read_value(&mut self.reader, self.element_type, 0).ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// Reads one value of type `value_type`, validating it fully (arrays included).
pub fn read_value<'a>(
    reader: &mut Reader<'a>,
    value_type: ValueType,
    depth: u32,
) -> Result<Value<'a>, GgufError> {
    Ok(match value_type {
        ValueType::U8 => Value::U8(reader.u8()?),
        ValueType::I8 => Value::I8(i8::from_le_bytes(reader.array()?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(reader.array()?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(reader.array()?)),
        ValueType::U32 => Value::U32(reader.u32()?),
        ValueType::I32 => Value::I32(i32::from_le_bytes(reader.array()?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(reader.array()?)),
        ValueType::U64 => Value::U64(reader.u64()?),
        ValueType::I64 => Value::I64(i64::from_le_bytes(reader.array()?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(reader.array()?)),
        ValueType::Bool => {
            let offset = reader.position();
            match reader.u8()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                byte => return Err(GgufError::InvalidBool { offset, byte }),
            }
        }
        ValueType::String => Value::String(reader.string()?),
        ValueType::Array => Value::Array(read_array(reader, depth)?),
    })
}

fn read_array<'a>(reader: &mut Reader<'a>, depth: u32) -> Result<ArrayValue<'a>, GgufError> {
    let offset = reader.position();
    if depth >= MAX_NESTING {
        return Err(GgufError::NestingTooDeep { offset });
    }
    let element_type = ValueType::from_id(reader.u32()?, offset)?;
    let count = reader.u64()?;
    // Each element takes at least `min_size` bytes: a count the rest of the file cannot hold is
    // rejected before any work is done for it.
    let limit = reader.remaining() as u64 / element_type.min_size();
    if count > limit {
        return Err(GgufError::TooMany {
            what: "array elements",
            count,
            limit,
        });
    }
    let len = count as usize;
    let start = reader.position();
    match element_type.fixed_size() {
        Some(size) if element_type != ValueType::Bool => {
            reader.bytes(count * size)?;
        }
        _ => {
            for _ in 0..len {
                read_value(reader, element_type, depth + 1)?;
            }
        }
    }
    Ok(ArrayValue {
        element_type,
        len,
        bytes: reader.consumed_since(start),
    })
}
