//! Seeded, reproducible parameter initialisation.
//!
//! candle's `VarMap` draws initial values from an unseeded generator, so two runs never
//! start from the same weights. [`SeededVarMap`] is a `VarBuilder` backend that creates
//! the same `Var`s as a `VarMap` would (and registers them in one, so an optimiser can
//! train them), but draws each tensor from a generator seeded by the model seed and the
//! tensor's name: the values depend neither on the construction order nor on the thread.

use std::collections::hash_map::Entry;

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, Init, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};

/// A `VarBuilder` backend that creates missing tensors with seeded random values and
/// registers them as `Var`s in a [`VarMap`]; tensors already in the map are reused.
#[derive(Clone)]
pub struct SeededVarMap {
    /// Where the created variables live (shared with the caller).
    map: VarMap,
    /// Model seed; mixed with each tensor name.
    seed: u64,
}

impl SeededVarMap {
    /// A backend filling `map` with values drawn from `seed`.
    pub fn new(map: VarMap, seed: u64) -> Self {
        Self { map, seed }
    }

    /// A `VarBuilder` over this backend.
    pub fn into_var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self), dtype, device.clone())
    }
}

/// Builds a `VarBuilder` that fills `map` with seeded random values (see [`SeededVarMap`]).
pub fn seeded_var_builder(
    map: &VarMap,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> VarBuilder<'static> {
    SeededVarMap::new(map.clone(), seed).into_var_builder(dtype, device)
}

/// FNV-1a hash of a tensor name, used to derive its generator seed.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Draws `n` values following `init` for a tensor of shape `shape`.
fn draw(init: Init, shape: &Shape, rng: &mut rand::rngs::StdRng) -> Vec<f64> {
    let n = shape.elem_count();
    let uniform = |rng: &mut rand::rngs::StdRng, lo: f64, up: f64| -> Vec<f64> {
        (0..n).map(|_| rng.random_range(lo..up)).collect()
    };
    let normal = |rng: &mut rand::rngs::StdRng, mean: f64, std: f64| -> Vec<f64> {
        // Box–Muller; `1 - u` keeps the logarithm finite.
        (0..n)
            .map(|_| {
                let u1: f64 = 1.0 - rng.random::<f64>();
                let u2: f64 = rng.random();
                mean + std * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
            })
            .collect()
    };
    match init {
        Init::Const(c) => vec![c; n],
        Init::Uniform { lo, up } if up > lo => uniform(rng, lo, up),
        Init::Uniform { lo, .. } => vec![lo; n],
        Init::Randn { mean, stdev } => normal(rng, mean, stdev),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let fan: FanInOut = fan;
            let fan = fan.for_shape(shape).max(1);
            let std = non_linearity.gain() / (fan as f64).sqrt();
            match dist {
                NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    uniform(rng, -bound, bound)
                }
                NormalOrUniform::Normal => normal(rng, 0.0, std),
            }
        }
    }
}

impl SimpleBackend for SeededVarMap {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut data = self
            .map
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("seeded var map: poisoned lock".into()))?;
        match data.entry(name.to_string()) {
            Entry::Occupied(e) => {
                let t = e.get().as_tensor().clone();
                if t.shape() != &s {
                    candle_core::bail!(
                        "tensor `{name}` requested with shape {s:?} but exists with {:?}",
                        t.shape()
                    );
                }
                t.to_dtype(dtype)
            }
            Entry::Vacant(e) => {
                let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed ^ name_hash(name));
                let values = draw(h, &s, &mut rng);
                let t = Tensor::from_vec(values, s, dev)?.to_dtype(dtype)?;
                let var = Var::from_tensor(&t)?;
                let t = var.as_tensor().clone();
                e.insert(var);
                Ok(t)
            }
        }
    }

    fn get_unchecked(&self, name: &str, dtype: DType, _dev: &Device) -> Result<Tensor> {
        let data = self
            .map
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("seeded var map: poisoned lock".into()))?;
        match data.get(name) {
            Some(v) => v.as_tensor().to_dtype(dtype),
            None => Err(candle_core::Error::CannotFindTensor {
                path: name.to_string(),
            }
            .bt()),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.map
            .data()
            .lock()
            .map(|d| d.contains_key(name))
            .unwrap_or(false)
    }
}

/// Tensor names and shapes, in request order.
pub type TensorList = Vec<(String, Vec<usize>)>;

/// A `VarBuilder` backend that hands out zeros and records every requested tensor's
/// name and shape, in request order: the list of tensors an architecture expects.
/// Clones share one record, so a clone can be given to a `VarBuilder` and the
/// original read afterwards.
#[derive(Default, Clone)]
pub struct ShapeRecorder {
    /// `(name, shape)` in the order the constructor asked for them.
    seen: std::sync::Arc<std::sync::Mutex<TensorList>>,
}

impl ShapeRecorder {
    /// The tensors requested so far, in request order (each name once).
    pub fn tensors(&self) -> TensorList {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl SimpleBackend for ShapeRecorder {
    fn get(&self, s: Shape, name: &str, _h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        if let Ok(mut seen) = self.seen.lock() {
            if !seen.iter().any(|(n, _)| n == name) {
                seen.push((name.to_string(), s.dims().to_vec()));
            }
        }
        Tensor::zeros(s, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        candle_core::bail!("shape recorder cannot give `{name}` without a shape")
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_values_other_seed_other_values() {
        let dev = Device::Cpu;
        let make = |seed| -> Vec<f32> {
            let map = VarMap::new();
            let vb = seeded_var_builder(&map, seed, DType::F32, &dev);
            vb.get_with_hints((4, 3), "w", candle_nn::init::DEFAULT_KAIMING_NORMAL)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        assert_eq!(make(7), make(7));
        assert_ne!(make(7), make(8));
    }

    #[test]
    fn vars_are_registered_and_reused() {
        let dev = Device::Cpu;
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 1, DType::F32, &dev);
        let a = vb.pp("x").get_with_hints(3, "b", Init::Const(2.0)).unwrap();
        let b = vb.pp("x").get_with_hints(3, "b", Init::Const(5.0)).unwrap();
        assert_eq!(a.to_vec1::<f32>().unwrap(), vec![2.0; 3]);
        assert_eq!(b.to_vec1::<f32>().unwrap(), vec![2.0; 3]);
        assert_eq!(map.all_vars().len(), 1);
        assert!(vb.pp("x").get_with_hints(4, "b", Init::Const(0.0)).is_err());
    }

    #[test]
    fn kaiming_uniform_respects_its_bound() {
        let dev = Device::Cpu;
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 3, DType::F64, &dev);
        let w = vb
            .get_with_hints((8, 50), "w", candle_nn::init::DEFAULT_KAIMING_UNIFORM)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let bound = 3f64.sqrt() * 2f64.sqrt() / 50f64.sqrt();
        assert!(w.iter().all(|v| v.abs() <= bound));
        assert!(w.iter().any(|v| v.abs() > 0.5 * bound));
    }
}
