//! GGUF (v2, v3; little-endian) reader over a byte slice.
//!
//! [`Gguf::parse`] validates the whole file once: every count is bounded before anything is
//! allocated for it, every string is UTF-8, every array is walked, every tensor's shape, type,
//! alignment and data range is checked (in bounds, no overlaps). After that, metadata and tensor
//! data are borrowed from the slice without copies.

mod error;
mod reader;
mod tensor;
mod value;

pub use error::GgufError;
pub use tensor::{MAX_DIMS, TensorInfo, TensorType};
pub use value::{ArrayIter, ArrayValue, Value, ValueType};

use alloc::string::ToString;
use alloc::vec::Vec;
use reader::Reader;

/// "GGUF" read as a little-endian u32.
pub const GGUF_MAGIC: u32 = 0x4655_4747;
/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Most metadata entries accepted.
pub const MAX_METADATA: u64 = 1 << 16;
/// Most tensors accepted.
pub const MAX_TENSORS: u64 = 1 << 16;
/// Longest tensor name accepted (llama.cpp's limit is 63 bytes; leave room).
pub const MAX_TENSOR_NAME: usize = 256;
/// Largest `general.alignment` accepted.
const MAX_ALIGNMENT: u64 = 1 << 16;

/// A parsed GGUF file borrowing from its bytes.
#[derive(Debug)]
pub struct Gguf<'a> {
    version: u32,
    metadata: Vec<(&'a str, Value<'a>)>,
    /// Indices into `metadata`, sorted by key, for lookups.
    metadata_index: Vec<usize>,
    tensors: Vec<TensorInfo<'a>>,
    /// Indices into `tensors`, sorted by name, for lookups.
    tensor_index: Vec<usize>,
    alignment: u64,
    data_offset: u64,
}

impl<'a> Gguf<'a> {
    /// Parses and validates a whole GGUF file.
    pub fn parse(data: &'a [u8]) -> Result<Self, GgufError> {
        let mut reader = Reader::new(data);
        let magic = reader.u32()?;
        if magic != GGUF_MAGIC {
            return Err(GgufError::BadMagic { found: magic });
        }
        let version = reader.u32()?;
        if version != 2 && version != 3 {
            return Err(GgufError::UnsupportedVersion { version });
        }
        let tensor_count = reader.u64()?;
        let metadata_count = reader.u64()?;
        // Smallest encodings: a tensor info is name length + n_dims + one dim + type + offset
        // (32 bytes), a key/value is key length + type + one byte (13 bytes).
        let left = reader.remaining() as u64;
        check_count("tensors", tensor_count, MAX_TENSORS.min(left / 32))?;
        check_count(
            "metadata entries",
            metadata_count,
            MAX_METADATA.min(left / 13),
        )?;

        let mut metadata = Vec::with_capacity(metadata_count as usize);
        for _ in 0..metadata_count {
            let key = reader.string()?;
            let offset = reader.position();
            let value_type = ValueType::from_id(reader.u32()?, offset)?;
            let value = value::read_value(&mut reader, value_type, 0)?;
            metadata.push((key, value));
        }
        let metadata_index =
            sorted_unique(&metadata, |entry| entry.0).map_err(|key| GgufError::DuplicateKey {
                key: key.to_string(),
            })?;

        let alignment = match lookup(&metadata, &metadata_index, "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(value)) => u64::from(*value),
            Some(other) => {
                return Err(GgufError::BadAlignment {
                    value: other.as_u64().unwrap_or(0),
                });
            }
        };
        if !alignment.is_power_of_two() || alignment > MAX_ALIGNMENT {
            return Err(GgufError::BadAlignment { value: alignment });
        }

        let mut raw_tensors = Vec::with_capacity(tensor_count as usize);
        for tensor_index in 0..tensor_count as usize {
            raw_tensors.push(read_tensor_info(&mut reader, tensor_index)?);
        }
        let header_end = reader.position() as u64;
        // Cannot overflow: header_end <= data.len() and alignment <= 2^16.
        let data_offset = header_end.div_ceil(alignment) * alignment;

        let mut tensors = Vec::with_capacity(raw_tensors.len());
        for (tensor_index, raw) in raw_tensors.into_iter().enumerate() {
            tensors.push(place_tensor(
                data,
                raw,
                tensor_index,
                data_offset,
                alignment,
            )?);
        }
        check_no_overlap(&tensors)?;
        let tensor_index = sorted_unique(&tensors, |tensor| tensor.name).map_err(|name| {
            GgufError::DuplicateTensor {
                name: name.to_string(),
            }
        })?;

        Ok(Self {
            version,
            metadata,
            metadata_index,
            tensors,
            tensor_index,
            alignment,
            data_offset,
        })
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Offset of the tensor data section from the start of the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// All metadata entries in file order.
    pub fn metadata(&self) -> &[(&'a str, Value<'a>)] {
        &self.metadata
    }

    /// All tensors in file order.
    pub fn tensors(&self) -> &[TensorInfo<'a>] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo<'a>> {
        self.tensor_index
            .binary_search_by(|&i| self.tensors[i].name.cmp(name))
            .ok()
            .map(|at| &self.tensors[self.tensor_index[at]])
    }

    /// The value under `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        lookup(&self.metadata, &self.metadata_index, key)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&'a str, GgufError> {
        self.get_str("general.architecture")
    }

    pub fn get_str(&self, key: &str) -> Result<&'a str, GgufError> {
        required(key, self.opt_str(key)?)
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, GgufError> {
        self.typed(key, "string", |value| match value {
            Value::String(s) => Some(*s),
            _ => None,
        })
    }

    /// Any integer type holding a value that fits in u32.
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        required(key, self.opt_u32(key)?)
    }

    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>, GgufError> {
        self.typed(key, "u32", |value| {
            value.as_u64().and_then(|v| u32::try_from(v).ok())
        })
    }

    /// Any integer type holding a value that fits in i32.
    pub fn get_i32(&self, key: &str) -> Result<i32, GgufError> {
        required(key, self.opt_i32(key)?)
    }

    pub fn opt_i32(&self, key: &str) -> Result<Option<i32>, GgufError> {
        self.typed(key, "i32", |value| {
            value.as_i64().and_then(|v| i32::try_from(v).ok())
        })
    }

    /// Any integer type holding a non-negative value.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        required(key, self.opt_u64(key)?)
    }

    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.typed(key, "u64", Value::as_u64)
    }

    /// An f32 (an f64 is narrowed).
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        required(key, self.opt_f32(key)?)
    }

    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>, GgufError> {
        self.typed(key, "f32", |value| match *value {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => None,
        })
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        required(key, self.opt_bool(key)?)
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.typed(key, "bool", |value| match *value {
            Value::Bool(v) => Some(v),
            _ => None,
        })
    }

    pub fn get_array(&self, key: &str) -> Result<ArrayValue<'a>, GgufError> {
        required(key, self.opt_array(key)?)
    }

    pub fn opt_array(&self, key: &str) -> Result<Option<ArrayValue<'a>>, GgufError> {
        self.typed(key, "array", |value| match *value {
            Value::Array(array) => Some(array),
            _ => None,
        })
    }

    /// An array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&'a str>, GgufError> {
        self.collect_array(key, "array of strings", |value| match value {
            Value::String(s) => Some(s),
            _ => None,
        })
    }

    /// An array of integers that all fit in i32.
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>, GgufError> {
        self.collect_array(key, "array of i32", |value| {
            value.as_i64().and_then(|v| i32::try_from(v).ok())
        })
    }

    /// An array of integers that all fit in u32.
    pub fn get_u32_array(&self, key: &str) -> Result<Vec<u32>, GgufError> {
        self.collect_array(key, "array of u32", |value| {
            value.as_u64().and_then(|v| u32::try_from(v).ok())
        })
    }

    /// An array of f32.
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>, GgufError> {
        self.collect_array(key, "array of f32", |value| match value {
            Value::F32(v) => Some(v),
            _ => None,
        })
    }

    fn typed<T>(
        &self,
        key: &str,
        expected: &'static str,
        convert: impl FnOnce(&Value<'a>) -> Option<T>,
    ) -> Result<Option<T>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => convert(value)
                .map(Some)
                .ok_or_else(|| GgufError::WrongType {
                    key: key.to_string(),
                    expected,
                }),
        }
    }

    fn collect_array<T>(
        &self,
        key: &str,
        expected: &'static str,
        convert: impl Fn(Value<'a>) -> Option<T>,
    ) -> Result<Vec<T>, GgufError> {
        let array = self.get_array(key)?;
        let wrong = || GgufError::WrongType {
            key: key.to_string(),
            expected,
        };
        let mut out = Vec::with_capacity(array.len());
        for value in array.iter() {
            out.push(convert(value).ok_or_else(wrong)?);
        }
        if out.len() != array.len() {
            return Err(wrong());
        }
        Ok(out)
    }
}

fn required<T>(key: &str, value: Option<T>) -> Result<T, GgufError> {
    value.ok_or_else(|| GgufError::MissingKey {
        key: key.to_string(),
    })
}

fn check_count(what: &'static str, count: u64, limit: u64) -> Result<(), GgufError> {
    if count > limit {
        return Err(GgufError::TooMany { what, count, limit });
    }
    Ok(())
}

fn lookup<'v, 'a>(
    metadata: &'v [(&'a str, Value<'a>)],
    index: &[usize],
    key: &str,
) -> Option<&'v Value<'a>> {
    index
        .binary_search_by(|&i| metadata[i].0.cmp(key))
        .ok()
        .map(|at| &metadata[index[at]].1)
}

/// Indices of `items` sorted by `key`, or the first duplicated key.
fn sorted_unique<'a, T>(items: &[T], key: impl Fn(&T) -> &'a str) -> Result<Vec<usize>, &'a str> {
    let mut index: Vec<usize> = (0..items.len()).collect();
    index.sort_unstable_by(|&a, &b| key(&items[a]).cmp(key(&items[b])));
    for pair in index.windows(2) {
        if key(&items[pair[0]]) == key(&items[pair[1]]) {
            return Err(key(&items[pair[0]]));
        }
    }
    Ok(index)
}

/// A tensor info as stored: offset still relative to the data section.
struct RawTensor<'a> {
    name: &'a str,
    n_dims: usize,
    dims: [u64; MAX_DIMS],
    tensor_type: TensorType,
    relative_offset: u64,
}

fn read_tensor_info<'a>(
    reader: &mut Reader<'a>,
    tensor_index: usize,
) -> Result<RawTensor<'a>, GgufError> {
    let name_offset = reader.position();
    let name = reader.string()?;
    if name.len() > MAX_TENSOR_NAME {
        return Err(GgufError::StringTooLong {
            offset: name_offset,
            len: name.len() as u64,
        });
    }
    let n_dims = reader.u32()?;
    if n_dims == 0 || n_dims as usize > MAX_DIMS {
        return Err(GgufError::BadDimensions {
            tensor_index,
            n_dims,
        });
    }
    let mut dims = [1u64; MAX_DIMS];
    for dim in dims.iter_mut().take(n_dims as usize) {
        *dim = reader.u64()?;
        if *dim == 0 {
            return Err(GgufError::BadDimensions {
                tensor_index,
                n_dims,
            });
        }
    }
    let type_id = reader.u32()?;
    let tensor_type = TensorType::from_id(type_id).ok_or(GgufError::UnsupportedTensorType {
        tensor_index,
        type_id,
    })?;
    let relative_offset = reader.u64()?;
    Ok(RawTensor {
        name,
        n_dims: n_dims as usize,
        dims,
        tensor_type,
        relative_offset,
    })
}

fn place_tensor<'a>(
    data: &'a [u8],
    raw: RawTensor<'a>,
    tensor_index: usize,
    data_offset: u64,
    alignment: u64,
) -> Result<TensorInfo<'a>, GgufError> {
    let size = tensor::tensor_byte_size(tensor_index, raw.tensor_type, &raw.dims)?;
    if !raw.relative_offset.is_multiple_of(alignment) {
        return Err(GgufError::MisalignedTensor {
            tensor_index,
            offset: raw.relative_offset,
        });
    }
    let out_of_bounds = GgufError::TensorOutOfBounds {
        tensor_index,
        offset: raw.relative_offset,
        size,
    };
    let start = data_offset
        .checked_add(raw.relative_offset)
        .ok_or(out_of_bounds.clone())?;
    let end = start.checked_add(size).ok_or(out_of_bounds.clone())?;
    if end > data.len() as u64 {
        return Err(out_of_bounds);
    }
    Ok(TensorInfo {
        name: raw.name,
        n_dims: raw.n_dims,
        dims: raw.dims,
        tensor_type: raw.tensor_type,
        file_offset: start,
        data: &data[start as usize..end as usize],
    })
}

fn check_no_overlap(tensors: &[TensorInfo<'_>]) -> Result<(), GgufError> {
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_unstable_by_key(|&i| tensors[i].file_offset);
    for pair in order.windows(2) {
        let (first, second) = (&tensors[pair[0]], &tensors[pair[1]]);
        if first.file_offset + first.data.len() as u64 > second.file_offset {
            return Err(GgufError::OverlappingTensors {
                first: pair[0],
                second: pair[1],
            });
        }
    }
    Ok(())
}
