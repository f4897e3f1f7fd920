//! Golden tests of the training losses against PyTorch: values and input gradients
//! from `scripts/golden_losses.py` (torch, f64), recomputed here in f64.

use candle_core::{Device, Tensor, Var};
use hark::train::loss;
use serde_json::Value;

fn golden() -> Value {
    let text = std::fs::read_to_string("tests/data/golden/losses/losses.json").unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn shape(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn tensor(case: &Value, key: &str, shape_key: &str) -> Tensor {
    Tensor::from_vec(floats(&case[key]), shape(&case[shape_key]), &Device::Cpu).unwrap()
}

fn var(case: &Value, key: &str) -> Var {
    Var::from_tensor(&tensor(case, key, "shape")).unwrap()
}

/// Compares a loss and the gradient of `input` with the golden values.
fn check(name: &str, case: &Value, l: &Tensor, input: &Var, tol: f64) {
    let want = case["loss"].as_f64().unwrap();
    let got = l.to_scalar::<f64>().unwrap();
    assert!(
        (got - want).abs() <= tol * want.abs().max(1.0),
        "{name}: loss {got} vs torch {want}"
    );
    let g = l.backward().unwrap();
    let got: Vec<f64> = g
        .get(input.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let want = floats(&case["grads"][0]);
    assert_eq!(got.len(), want.len());
    let max_err = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(max_err <= tol, "{name}: max gradient error {max_err}");
}

#[test]
fn bce_on_probabilities_matches_torch_with_mask() {
    let g = golden();
    let c = &g["bce"];
    let p = var(c, "p");
    let l = loss::bce(
        p.as_tensor(),
        &tensor(c, "y", "shape"),
        Some(&tensor(c, "mask", "mask_shape")),
    )
    .unwrap();
    check("bce", c, &l, &p, 1e-10);
}

#[test]
fn bce_on_logits_matches_torch_including_huge_logits() {
    let g = golden();
    let c = &g["bce_logits"];
    let x = var(c, "x");
    let l = loss::bce_with_logits(x.as_tensor(), &tensor(c, "y", "shape"), None).unwrap();
    check("bce_logits", c, &l, &x, 1e-10);
}

#[test]
fn focal_loss_with_soft_targets_matches_torch() {
    let g = golden();
    let c = &g["focal"];
    let p = var(c, "p");
    let gamma = c["gamma"].as_f64().unwrap();
    let alpha = c["alpha"].as_f64().unwrap();
    let l = loss::focal(
        p.as_tensor(),
        &tensor(c, "y", "shape"),
        gamma,
        Some(alpha),
        None,
    )
    .unwrap();
    check("focal", c, &l, &p, 1e-9);
}

#[test]
fn mse_matches_torch_with_mask() {
    let g = golden();
    let c = &g["mse"];
    let a = var(c, "a");
    let l = loss::mse(
        a.as_tensor(),
        &tensor(c, "b", "shape"),
        Some(&tensor(c, "mask", "mask_shape")),
    )
    .unwrap();
    check("mse", c, &l, &a, 1e-10);
}

#[test]
fn scene_cross_entropy_matches_torch() {
    let g = golden();
    let c = &g["scene_ce"];
    let x = var(c, "logits");
    let targets: Vec<u32> = c["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let n = targets.len();
    let targets = Tensor::from_vec(targets, n, &Device::Cpu).unwrap();
    let l = loss::scene_cross_entropy(x.as_tensor(), &targets).unwrap();
    check("scene_ce", c, &l, &x, 1e-10);
}

#[test]
fn ifd_pairs_and_loss_match_torch() {
    let g = golden();
    let c = &g["ifd"];
    let to_bool = |v: &Value| v.as_u64().unwrap() != 0;
    let clip: Vec<Vec<bool>> = c["clip"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(to_bool).collect())
        .collect();
    let frame: Vec<Vec<Vec<bool>>> = c["frame"]
        .as_array()
        .unwrap()
        .iter()
        .map(|clip| {
            clip.as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_array().unwrap().iter().map(to_bool).collect())
                .collect()
        })
        .collect();
    let valid = shape(&c["valid"]);
    let pairs = loss::ifd_pairs(&clip, &frame, &valid, 10_000);
    let triples = |v: &Value| -> Vec<(usize, usize, usize)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let p = shape(p);
                (p[0], p[1], p[2])
            })
            .collect()
    };
    assert_eq!(pairs.positive, triples(&c["positive"]));
    assert_eq!(pairs.negative, triples(&c["negative"]));
    let e = var(c, "emb");
    let l = loss::ifd(e.as_tensor(), &pairs, c["margin"].as_f64().unwrap()).unwrap();
    check("ifd", c, &l, &e, 1e-10);
}
