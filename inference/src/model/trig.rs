//! Single-precision sine and cosine bit-identical to glibc's (the Arm optimized-routines
//! algorithm, in its FMA build as selected on x86-64 CPUs with FMA), because llama.cpp builds its
//! RoPE tables with `sinf`/`cosf` and the model's greedy output is sensitive to their last bit.
//!
//! The argument is reduced to [-pi/4, pi/4] (a multiply-subtract below 120, a 4/pi table of 192
//! bits above), and a short polynomial is evaluated in f64 with fused multiply-adds, then
//! rounded to f32.

use libm::fma;

/// Polynomial and reduction constants; the second set negates the cosine polynomial.
struct Table {
    hpi_inv: f64,
    hpi: f64,
    c: [f64; 5],
    s: [f64; 3],
}

const fn d(bits: u64) -> f64 {
    f64::from_bits(bits)
}

const SIGN: [f64; 4] = [1.0, -1.0, -1.0, 1.0];

// 2/pi * 2^24, pi/2, cos coefficients c0..c4, sin coefficients s1..s3.
const TABLES: [Table; 2] = [
    Table {
        hpi_inv: d(0x4164_5f30_6dc9_c883),
        hpi: d(0x3ff9_21fb_5444_2d18),
        c: [
            d(0x3ff0_0000_0000_0000),
            d(0xbfdf_ffff_fd0c_621c),
            d(0x3fa5_5553_e106_8f19),
            d(0xbf56_c087_e89a_359d),
            d(0x3ef9_9343_027b_f8c3),
        ],
        s: [
            d(0xbfc5_5554_5995_a603),
            d(0x3f81_1076_0523_0bc4),
            d(0xbf29_94eb_3774_cf24),
        ],
    },
    Table {
        hpi_inv: d(0x4164_5f30_6dc9_c883),
        hpi: d(0x3ff9_21fb_5444_2d18),
        c: [
            d(0xbff0_0000_0000_0000),
            d(0x3fdf_ffff_fd0c_621c),
            d(0xbfa5_5553_e106_8f19),
            d(0x3f56_c087_e89a_359d),
            d(0xbef9_9343_027b_f8c3),
        ],
        s: [
            d(0xbfc5_5554_5995_a603),
            d(0x3f81_1076_0523_0bc4),
            d(0xbf29_94eb_3774_cf24),
        ],
    },
];

/// 4/pi to 192 bits, eight new bits per entry.
const INV_PIO4: [u32; 24] = [
    0xa2,
    0xa2f9,
    0xa2_f983,
    0xa2f9_836e,
    0xf983_6e4e,
    0x836e_4e44,
    0x6e4e_4415,
    0x4e44_1529,
    0x4415_29fc,
    0x1529_fc27,
    0x29fc_2757,
    0xfc27_57d1,
    0x2757_d1f5,
    0x57d1_f534,
    0xd1f5_34dd,
    0xf534_ddc0,
    0x34dd_c0db,
    0xddc0_db62,
    0xc0db_6295,
    0xdb62_9599,
    0x6295_993c,
    0x9599_3c43,
    0x993c_4390,
    0x3c43_9041,
];

/// 2 pi * 2^-64.
const PI63: f64 = d(0x3c19_21fb_5444_2d18);

fn abstop12(x: f32) -> u32 {
    (x.to_bits() >> 20) & 0x7ff
}

/// The polynomial for quadrant `n`: the sine polynomial when even, the cosine one when odd.
fn poly(x: f64, x2: f64, t: &Table, n: i32) -> f32 {
    if n & 1 == 0 {
        let x3 = x * x2;
        let s1 = fma(x2, t.s[2], t.s[1]);
        let x7 = x3 * x2;
        let s = fma(x3, t.s[0], x);
        fma(x7, s1, s) as f32
    } else {
        let x4 = x2 * x2;
        let c2 = fma(x2, t.c[4], t.c[3]);
        let c1 = fma(x2, t.c[1], t.c[0]);
        let x6 = x4 * x2;
        let c = fma(x4, t.c[2], c1);
        fma(x6, c2, c) as f32
    }
}

fn reduce_fast(x: f64, t: &Table) -> (f64, i32) {
    let r = x * t.hpi_inv;
    let n = ((r as i32).wrapping_add(0x80_0000)) >> 24;
    (fma(-f64::from(n), t.hpi, x), n)
}

fn reduce_large(xi: u32) -> (f64, i32) {
    let arr = &INV_PIO4[((xi >> 26) & 15) as usize..];
    let shift = (xi >> 23) & 7;
    let xi = ((xi & 0xff_ffff) | 0x80_0000) << shift;
    let res0 = u64::from(xi.wrapping_mul(arr[0]));
    let res1 = u64::from(xi) * u64::from(arr[4]);
    let res2 = u64::from(xi) * u64::from(arr[8]);
    let mut res0 = ((res2 >> 32) | (res0 << 32)).wrapping_add(res1);
    let n = res0.wrapping_add(1 << 61) >> 62;
    res0 = res0.wrapping_sub(n << 62);
    ((res0 as i64) as f64 * PI63, n as i32)
}

/// `(sin y, cos y)` with glibc's results.
pub fn sincosf(y: f32) -> (f32, f32) {
    let x = f64::from(y);
    let pio4 = abstop12(d(0x3fe9_21fb_5444_2d18) as f32);
    if abstop12(y) < pio4 {
        if abstop12(y) < abstop12(f32::from_bits(0x3980_0000)) {
            return (y, 1.0);
        }
        let x2 = x * x;
        return (poly(x, x2, &TABLES[0], 0), poly(x, x2, &TABLES[0], 1));
    }
    let (reduced, n, quadrant) = if abstop12(y) < abstop12(120.0) {
        let (r, n) = reduce_fast(x, &TABLES[0]);
        (r, n, n)
    } else if abstop12(y) < abstop12(f32::INFINITY) {
        let xi = y.to_bits();
        let (r, n) = reduce_large(xi);
        (r, n, n.wrapping_add((xi >> 31) as i32))
    } else {
        return (f32::NAN, f32::NAN);
    };
    let s = SIGN[(quadrant & 3) as usize];
    let table = &TABLES[usize::from(quadrant & 2 != 0)];
    let xs = reduced * s;
    let x2 = reduced * reduced;
    (poly(xs, x2, table, n), poly(xs, x2, table, n ^ 1))
}

#[cfg(test)]
mod tests {
    use super::sincosf;

    /// `(x, sinf(x), cosf(x))` bit patterns from glibc 2.36 on an x86-64 CPU with FMA. The first
    /// input is one where glibc is not correctly rounded (its sine is 1 ulp above the nearest).
    const GLIBC: [(u32, u32, u32); 10] = [
        (0x3e29_7407, 0x3e28_ae50, 0x3f7c_80b9),
        (0x4032_a506, 0x3eaf_b199, 0xbf70_74a7),
        (0x3fb2_a506, 0x3f7c_157f, 0x3e32_6c4f),
        (0x38d1_b717, 0x38d1_b717, 0x3f80_0000),
        (0x3f00_0000, 0x3ef5_7744, 0x3f60_a940),
        (0x447a_0000, 0x3f53_ae61, 0x3f0f_f813),
        (0x44ff_e000, 0xbf77_e3c6, 0x3e7f_b55b),
        (0x4316_4000, 0xbf05_0820, 0x3f5a_b864),
        (0xc040_0000, 0xbe10_81c3, 0xbf7d_7026),
        (0x3727_c5ac, 0x3727_c5ac, 0x3f80_0000),
    ];

    #[test]
    fn matches_glibc_bit_for_bit() {
        for (x, sin, cos) in GLIBC {
            let (s, c) = sincosf(f32::from_bits(x));
            assert_eq!(
                (s.to_bits(), c.to_bits()),
                (sin, cos),
                "x = {}",
                f32::from_bits(x)
            );
        }
    }

    #[test]
    fn is_close_to_the_true_values_everywhere() {
        let mut x = -3000.0f32;
        while x < 3000.0 {
            let (s, c) = sincosf(x);
            assert!((f64::from(s) - f64::from(x).sin()).abs() < 2e-7, "sin {x}");
            assert!((f64::from(c) - f64::from(x).cos()).abs() < 2e-7, "cos {x}");
            x += 0.731;
        }
        assert!(sincosf(f32::NAN).0.is_nan() && sincosf(f32::INFINITY).1.is_nan());
    }
}
