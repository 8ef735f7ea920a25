//! Writes GGUF files for tests: metadata of any type and tensors of any supported type.

#![allow(dead_code)]

/// A metadata value to write.
#[derive(Clone, Debug)]
pub enum Meta {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    /// Element type id and encoded elements.
    Array(u32, Vec<Meta>),
}

impl Meta {
    pub fn type_id(&self) -> u32 {
        match self {
            Meta::U8(_) => 0,
            Meta::I8(_) => 1,
            Meta::U16(_) => 2,
            Meta::I16(_) => 3,
            Meta::U32(_) => 4,
            Meta::I32(_) => 5,
            Meta::F32(_) => 6,
            Meta::Bool(_) => 7,
            Meta::Str(_) => 8,
            Meta::Array(..) => 9,
            Meta::U64(_) => 10,
            Meta::I64(_) => 11,
            Meta::F64(_) => 12,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Meta::U8(v) => out.push(*v),
            Meta::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
            Meta::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Meta::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Meta::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Meta::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Meta::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Meta::Bool(v) => out.push(u8::from(*v)),
            Meta::Str(s) => write_str(out, s),
            Meta::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Meta::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Meta::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Meta::Array(element_type, items) => {
                out.extend_from_slice(&element_type.to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for item in items {
                    item.encode(out);
                }
            }
        }
    }
}

pub fn strs(items: &[&str]) -> Meta {
    Meta::Array(8, items.iter().map(|s| Meta::Str(s.to_string())).collect())
}

pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A tensor to write: name, shape (innermost first), GGML type id, encoded data.
pub struct TensorSpec {
    pub name: String,
    pub dims: Vec<u64>,
    pub type_id: u32,
    pub data: Vec<u8>,
}

/// Builds a GGUF file.
pub struct GgufWriter {
    pub version: u32,
    pub alignment: u64,
    pub metadata: Vec<(String, Meta)>,
    pub tensors: Vec<TensorSpec>,
}

impl GgufWriter {
    pub fn new() -> Self {
        Self {
            version: 3,
            alignment: 32,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    pub fn meta(&mut self, key: &str, value: Meta) -> &mut Self {
        self.metadata.push((key.to_string(), value));
        self
    }

    pub fn tensor(&mut self, name: &str, dims: &[u64], type_id: u32, data: Vec<u8>) -> &mut Self {
        self.tensors.push(TensorSpec {
            name: name.to_string(),
            dims: dims.to_vec(),
            type_id,
            data,
        });
        self
    }

    /// The encoded file, and for each tensor the offset of its info's `offset` field (for tests
    /// that corrupt it).
    pub fn build_with_offsets(&self) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            write_str(&mut out, key);
            out.extend_from_slice(&value.type_id().to_le_bytes());
            value.encode(&mut out);
        }
        let align = self.alignment;
        let mut relative = 0u64;
        let mut offsets = Vec::new();
        let mut field_positions = Vec::new();
        for tensor in &self.tensors {
            write_str(&mut out, &tensor.name);
            out.extend_from_slice(&(tensor.dims.len() as u32).to_le_bytes());
            for dim in &tensor.dims {
                out.extend_from_slice(&dim.to_le_bytes());
            }
            out.extend_from_slice(&tensor.type_id.to_le_bytes());
            field_positions.push(out.len());
            out.extend_from_slice(&relative.to_le_bytes());
            offsets.push(relative);
            relative = (relative + tensor.data.len() as u64).div_ceil(align) * align;
        }
        while !(out.len() as u64).is_multiple_of(align) {
            out.push(0);
        }
        let data_start = out.len();
        for (tensor, offset) in self.tensors.iter().zip(offsets) {
            out.resize(data_start + offset as usize, 0);
            out.extend_from_slice(&tensor.data);
        }
        (out, field_positions)
    }

    pub fn build(&self) -> Vec<u8> {
        self.build_with_offsets().0
    }
}
