//! Finite-difference gradient checks for layers (tests only).
//!
//! candle 0.11 has operations whose backward is silently wrong or missing, so every
//! layer's analytic gradient (from `backward`) is compared with central differences
//! in f64 on tiny shapes, for every parameter and for the input.

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};

/// Random f64 tensor with values in `[-1, 1)`.
pub fn rand_tensor(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).expect("shape matches")
}

/// Checks d(loss)/d(param) for every var of `map` and for every `inputs` var, where
/// `loss = Σ f() ⊙ R` with a fixed random `R` (so no symmetry hides an error).
/// Fails the test with the name of the first bad tensor and element.
pub fn check(map: &VarMap, inputs: &[(&str, &Var)], f: impl Fn() -> Result<Tensor>, tol: f64) {
    let out = f().expect("forward");
    assert_eq!(out.dtype(), DType::F64, "gradient checks run in f64");
    let r = rand_tensor(out.dims(), 99);
    let loss_of = |t: &Tensor| -> f64 {
        (t * &r)
            .and_then(|x| x.sum_all())
            .and_then(|x| x.to_scalar::<f64>())
            .expect("loss")
    };
    let loss = (&out * &r).and_then(|x| x.sum_all()).expect("loss");
    let grads = loss.backward().expect("backward");

    let mut named: Vec<(String, Var)> = {
        let data = map.data().lock().expect("lock");
        data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named.extend(inputs.iter().map(|(n, v)| (n.to_string(), (*v).clone())));

    let eps = 1e-6;
    for (name, var) in &named {
        let analytic: Vec<f64> = match grads.get(var.as_tensor()) {
            Some(g) => g.flatten_all().and_then(|g| g.to_vec1()).expect("grad"),
            None => vec![0.0; var.elem_count()],
        };
        let base: Vec<f64> = var.flatten_all().and_then(|t| t.to_vec1()).expect("value");
        for i in 0..base.len() {
            let mut shifted = base.clone();
            shifted[i] = base[i] + eps;
            var.set(&Tensor::from_vec(shifted.clone(), var.shape(), &Device::Cpu).expect("t"))
                .expect("set");
            let up = loss_of(&f().expect("forward"));
            shifted[i] = base[i] - eps;
            var.set(&Tensor::from_vec(shifted, var.shape(), &Device::Cpu).expect("t"))
                .expect("set");
            let down = loss_of(&f().expect("forward"));
            var.set(&Tensor::from_vec(base.clone(), var.shape(), &Device::Cpu).expect("t"))
                .expect("set");
            let numeric = (up - down) / (2.0 * eps);
            let err = (numeric - analytic[i]).abs() / (1.0 + numeric.abs());
            assert!(
                err < tol,
                "gradient of `{name}`[{i}]: analytic {} vs numeric {numeric} (rel. err {err:e})",
                analytic[i]
            );
        }
    }
}
