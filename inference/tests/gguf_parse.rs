//! The GGUF reader on well-formed files: every metadata type, nested arrays, alignment, tensor
//! placement, and the default model.

mod support;

use support::gguf_writer::{GgufWriter, Meta, strs};
use ward_inference::gguf::{Gguf, TensorType, Value, ValueType};

#[test]
fn reads_every_metadata_type_and_nested_arrays() {
    let mut writer = GgufWriter::new();
    writer
        .meta("general.architecture", Meta::Str("llama".into()))
        .meta("u8", Meta::U8(200))
        .meta("i8", Meta::I8(-5))
        .meta("u16", Meta::U16(60000))
        .meta("i16", Meta::I16(-30000))
        .meta("u32", Meta::U32(4_000_000_000))
        .meta("i32", Meta::I32(-7))
        .meta("f32", Meta::F32(1.5))
        .meta("bool", Meta::Bool(true))
        .meta("u64", Meta::U64(u64::MAX))
        .meta("i64", Meta::I64(i64::MIN))
        .meta("f64", Meta::F64(0.25))
        .meta("strings", strs(&["a", "ĠĠ", ""]))
        .meta(
            "ints",
            Meta::Array(5, vec![Meta::I32(1), Meta::I32(-2), Meta::I32(3)]),
        )
        .meta(
            "floats",
            Meta::Array(6, vec![Meta::F32(0.5), Meta::F32(-1.0)]),
        )
        .meta(
            "bools",
            Meta::Array(7, vec![Meta::Bool(false), Meta::Bool(true)]),
        )
        .meta(
            "nested",
            Meta::Array(
                9,
                vec![strs(&["x", "y"]), Meta::Array(4, vec![Meta::U32(9)])],
            ),
        );
    let bytes = writer.build();
    let gguf = Gguf::parse(&bytes).expect("parse");
    assert_eq!(gguf.version(), 3);
    assert_eq!(gguf.architecture().unwrap(), "llama");
    assert_eq!(gguf.get_u32("u8").unwrap(), 200);
    assert_eq!(gguf.get_i32("i8").unwrap(), -5);
    assert_eq!(gguf.get_u32("u16").unwrap(), 60000);
    assert_eq!(gguf.get_i32("i16").unwrap(), -30000);
    assert_eq!(gguf.get_u32("u32").unwrap(), 4_000_000_000);
    assert!(gguf.get_i32("u32").is_err(), "4e9 does not fit i32");
    assert!(gguf.get_u32("i32").is_err(), "negative does not fit u32");
    assert_eq!(gguf.get_f32("f32").unwrap(), 1.5);
    assert!(gguf.get_bool("bool").unwrap());
    assert_eq!(gguf.get_u64("u64").unwrap(), u64::MAX);
    assert_eq!(gguf.get("i64"), Some(&Value::I64(i64::MIN)));
    assert_eq!(gguf.get_f32("f64").unwrap(), 0.25);
    assert_eq!(gguf.get_str_array("strings").unwrap(), vec!["a", "ĠĠ", ""]);
    assert_eq!(gguf.get_i32_array("ints").unwrap(), vec![1, -2, 3]);
    assert_eq!(gguf.get_f32_array("floats").unwrap(), vec![0.5, -1.0]);
    assert!(gguf.get_str_array("ints").is_err());
    assert!(gguf.get_str("missing").is_err());
    assert_eq!(gguf.opt_str("missing").unwrap(), None);
    let bools: Vec<_> = gguf.get_array("bools").unwrap().iter().collect();
    assert_eq!(bools, vec![Value::Bool(false), Value::Bool(true)]);
    let nested = gguf.get_array("nested").unwrap();
    assert_eq!(nested.element_type(), ValueType::Array);
    let inner: Vec<_> = nested.iter().collect();
    assert_eq!(inner.len(), 2);
    match inner[0] {
        Value::Array(a) => {
            let items: Vec<_> = a.iter().collect();
            assert_eq!(items, vec![Value::String("x"), Value::String("y")]);
        }
        other => panic!("expected an array, got {other:?}"),
    }
    match inner[1] {
        Value::Array(a) => assert_eq!(a.iter().collect::<Vec<_>>(), vec![Value::U32(9)]),
        other => panic!("expected an array, got {other:?}"),
    }
}

#[test]
fn places_tensors_with_custom_alignment_in_v2_files() {
    let mut writer = GgufWriter::new();
    writer.version = 2;
    writer.alignment = 64;
    writer.meta("general.alignment", Meta::U32(64));
    writer.tensor(
        "a",
        &[3],
        0,
        [1.0f32, 2.0, 3.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
    );
    writer.tensor("b", &[32, 2], 8, vec![7u8; 68]);
    let bytes = writer.build();
    let gguf = Gguf::parse(&bytes).expect("parse");
    assert_eq!(gguf.alignment(), 64);
    assert_eq!(gguf.data_offset() % 64, 0);
    let a = gguf.tensor("a").unwrap();
    assert_eq!(a.tensor_type, TensorType::F32);
    assert_eq!(a.shape(), &[3]);
    assert_eq!(a.data.len(), 12);
    assert_eq!(&a.data[4..8], &2.0f32.to_le_bytes());
    let b = gguf.tensor("b").unwrap();
    assert_eq!(b.tensor_type, TensorType::Q8_0);
    assert_eq!(b.rows(), 2);
    assert_eq!(b.file_offset % 64, 0);
    assert!(gguf.tensor("c").is_none());
}

#[test]
fn reads_the_default_model() {
    let path = support::default_model_path();
    let bytes = std::fs::read(&path).expect("read model");
    let gguf = Gguf::parse(&bytes).expect("parse default model");
    assert_eq!(gguf.architecture().unwrap(), "llama");
    assert_eq!(gguf.get_u32("llama.block_count").unwrap(), 30);
    assert_eq!(gguf.get_u32("llama.embedding_length").unwrap(), 576);
    assert_eq!(gguf.get_f32("llama.rope.freq_base").unwrap(), 100000.0);
    assert_eq!(gguf.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    let tokens = gguf.get_str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 49152);
    assert_eq!(tokens[1], "<|im_start|>");
    assert_eq!(
        gguf.get_str_array("tokenizer.ggml.merges").unwrap()[0],
        "Ġ t"
    );
    assert_eq!(
        gguf.get_i32_array("tokenizer.ggml.token_type").unwrap()[0],
        3
    );
    assert!(!gguf.get_bool("tokenizer.ggml.add_bos_token").unwrap());
    assert_eq!(gguf.tensors().len(), 272);
    let embedding = gguf.tensor("token_embd.weight").unwrap();
    assert_eq!(embedding.tensor_type, TensorType::Q8_0);
    assert_eq!(embedding.shape(), &[576, 49152]);
    assert_eq!(
        gguf.tensor("blk.0.ffn_down.weight").unwrap().tensor_type,
        TensorType::Q4_1
    );
}
