//! The GGUF reader (and the model loader on whatever it accepts) on arbitrary bytes: any input
//! must give a value or a typed error, never a panic, an out-of-bounds read or a huge allocation.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_inference::gguf::{Gguf, Value};
use ward_inference::kernels::Kernels;
use ward_inference::model::Model;

fuzz_target!(|data: &[u8]| {
    let Ok(gguf) = Gguf::parse(data) else {
        return;
    };
    // Walk every value, arrays included, through the typed getters.
    for (key, value) in gguf.metadata() {
        let _ = gguf.get_str(key);
        let _ = gguf.get_u32(key);
        let _ = gguf.get_f32(key);
        let _ = gguf.get_bool(key);
        if let Value::Array(array) = value {
            let _ = gguf.get_str_array(key);
            let _ = gguf.get_i32_array(key);
            let _ = gguf.get_f32_array(key);
            for item in array.iter() {
                if let Value::Array(inner) = item {
                    let _ = inner.iter().count();
                }
            }
        }
    }
    for tensor in gguf.tensors() {
        assert!(gguf.tensor(tensor.name).is_some());
        let _ = tensor.element_count();
    }
    let _ = gguf.architecture();
    // Loading a model allocates in proportion to the tensors present, which the file bounds.
    let _ = Model::from_gguf(&gguf, Kernels::detect());
});
