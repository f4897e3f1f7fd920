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

/// Sequences `seqs[b]` of shape `(1, …, T_b, …)` (time on axis `dim`) zero-padded to `t`
/// frames and stacked on axis 0, the padded batch of a masked call.
pub fn pad_batch(seqs: &[Tensor], dim: usize, t: usize) -> Tensor {
    let rows: Vec<Tensor> = seqs
        .iter()
        .map(|s| {
            let n = s.dim(dim).expect("time axis");
            s.pad_with_zeros(dim, 0, t - n).expect("pad")
        })
        .collect();
    Tensor::cat(&rows, 0).expect("cat")
}

/// Asserts `|a − b| ≤ tol` element-wise (same shapes), naming `what`.
pub fn assert_close(a: &Tensor, b: &Tensor, tol: f64, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let d = (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_dtype(DType::F64))
        .and_then(|d| d.to_scalar::<f64>())
        .expect("difference");
    assert!(d <= tol, "{what}: differs by {d:e}");
}

/// Row `b` of a padded batch output cut to `len` frames on the time axis `dim`.
pub fn valid_row(x: &Tensor, b: usize, dim: usize, len: usize) -> Tensor {
    x.narrow(0, b, 1)
        .and_then(|r| r.narrow(dim, 0, len))
        .expect("row")
}

/// Checks a masked call's gradient: [`check`] (finite differences, padded input
/// elements included, whose numeric gradient is 0 when the outputs ignore them), and
/// that the analytic gradient of `x` is exactly zero at its padded frames (time on
/// `dim`, valid `lengths`): padding never counts.
pub fn check_masked(
    map: &VarMap,
    x: (&str, &Var),
    dim: usize,
    lengths: &[usize],
    f: impl Fn() -> Result<Tensor>,
    tol: f64,
) {
    check(map, &[x], &f, tol);
    let out = f().expect("forward");
    let r = rand_tensor(out.dims(), 98);
    let grads = (&out * &r)
        .and_then(|l| l.sum_all())
        .and_then(|l| l.backward())
        .expect("backward");
    let Some(g) = grads.get(x.1.as_tensor()) else {
        return;
    };
    let t = g.dim(dim).expect("time axis");
    for (b, &len) in lengths.iter().enumerate() {
        if len < t {
            let pad = g
                .narrow(0, b, 1)
                .and_then(|p| p.narrow(dim, len, t - len))
                .and_then(|p| p.abs())
                .and_then(|p| p.sum_all())
                .and_then(|p| p.to_scalar::<f64>())
                .expect("padding gradient");
            assert_eq!(
                pad, 0.0,
                "gradient reaches the padding of `{}` row {b}",
                x.0
            );
        }
    }
}

/// Every output of a network (frame, clip and each auxiliary output), flattened into
/// one vector: the function a whole-network gradient check differentiates.
pub fn flat_outputs(o: crate::model::arch::SedOutput) -> Result<Tensor> {
    let mut parts = vec![o.frame.flatten_all()?, o.clip.flatten_all()?];
    for t in [
        o.aux.reconstruction,
        o.aux.frame_secondary,
        o.aux.embeddings,
        o.aux.scene_logits,
    ]
    .into_iter()
    .flatten()
    {
        parts.push(t.flatten_all()?);
    }
    Tensor::cat(&parts, 0)
}
