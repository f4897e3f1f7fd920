//! Optimisation: AdamW with inspectable moment state (candle's keeps it private, so a
//! resumed run could not continue exactly), global-norm gradient clipping, and
//! ReduceLROnPlateau on a validation metric.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use serde::{Deserialize, Serialize};

/// AdamW hyper-parameters (PyTorch's `torch.optim.AdamW` semantics).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamWConfig {
    /// Learning rate (paper 000 uses 1e-4).
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }
}

/// AdamW over named variables, with moments that can be saved and restored.
#[derive(Debug)]
pub struct AdamW {
    /// Trained variables, by name (sorted, so the state layout is stable).
    vars: Vec<(String, Var)>,
    /// First moments, one per variable.
    m: Vec<Tensor>,
    /// Second moments, one per variable.
    v: Vec<Tensor>,
    /// Steps taken so far (bias correction).
    step: u64,
    /// Hyper-parameters; `lr` changes with the schedule.
    cfg: AdamWConfig,
}

impl AdamW {
    /// An optimiser for `vars` with zero moments.
    pub fn new(mut vars: Vec<(String, Var)>, cfg: AdamWConfig) -> Result<Self> {
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let m = vars
            .iter()
            .map(|(_, v)| v.as_tensor().zeros_like())
            .collect::<Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(Self {
            vars,
            m,
            v,
            step: 0,
            cfg,
        })
    }

    /// Current learning rate.
    pub fn lr(&self) -> f64 {
        self.cfg.lr
    }

    /// Sets the learning rate (for schedules).
    pub fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The trained variables, by name.
    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// One AdamW update from `grads`; variables without a gradient (e.g. BatchNorm
    /// running statistics) are left alone.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let c = self.cfg;
        let bc1 = 1.0 - c.beta1.powi(self.step as i32);
        let bc2 = 1.0 - c.beta2.powi(self.step as i32);
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let m = ((&self.m[i] * c.beta1)? + (g * (1.0 - c.beta1))?)?;
            let v = ((&self.v[i] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let m_hat = (&m * (1.0 / bc1))?;
            let v_hat = (&v * (1.0 / bc2))?;
            let upd = (m_hat / (v_hat.sqrt()? + c.eps)?)?;
            let decayed = (var.as_tensor() * (1.0 - c.lr * c.weight_decay))?;
            var.set(&(decayed - (upd * c.lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// The moments as named tensors (`m.<var>`, `v.<var>`) for a checkpoint.
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::with_capacity(2 * self.vars.len());
        for (i, (name, _)) in self.vars.iter().enumerate() {
            out.insert(format!("m.{name}"), self.m[i].clone());
            out.insert(format!("v.{name}"), self.v[i].clone());
        }
        out
    }

    /// Restores moments saved by [`AdamW::state_tensors`] and the step count. Fails
    /// naming the first missing or mis-shaped tensor.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, step: u64) -> Result<()> {
        for (i, (name, var)) in self.vars.iter().enumerate() {
            for (key, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let k = format!("{key}.{name}");
                let t = state.get(&k).ok_or_else(|| {
                    candle_core::Error::Msg(format!("optimiser state lacks `{k}`"))
                })?;
                if t.dims() != var.dims() {
                    candle_core::bail!(
                        "optimiser state `{k}` is {:?}, the variable is {:?}",
                        t.dims(),
                        var.dims()
                    );
                }
                *slot = t.to_dtype(var.dtype())?;
            }
        }
        self.step = step;
        Ok(())
    }
}

/// Scales every gradient of `vars` so that their global L2 norm is at most `max_norm`
/// (`torch.nn.utils.clip_grad_norm_`). Returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[(String, Var)], max_norm: f64) -> Result<f64> {
    let mut sq = 0.0f64;
    for (_, v) in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            sq += g
                .sqr()?
                .sum_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
        }
    }
    let norm = sq.sqrt();
    if norm.is_finite() && norm > max_norm && max_norm > 0.0 {
        let scale = max_norm / (norm + 1e-6);
        for (_, v) in vars {
            if let Some(g) = grads.get(v.as_tensor()) {
                let g = (g * scale)?;
                grads.insert(v.as_tensor(), g);
            }
        }
    }
    Ok(norm)
}

/// Settings of [`ReduceLrOnPlateau`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlateauConfig {
    /// Factor applied to the learning rate on a plateau.
    pub factor: f64,
    /// Epochs without improvement before the rate is reduced.
    pub patience: usize,
    /// Lowest learning rate.
    pub min_lr: f64,
    /// Smallest improvement that counts (absolute).
    pub threshold: f64,
}

impl Default for PlateauConfig {
    fn default() -> Self {
        Self {
            factor: 0.5,
            patience: 3,
            min_lr: 1e-6,
            threshold: 1e-4,
        }
    }
}

/// ReduceLROnPlateau in `max` mode (higher metric is better): after `patience` epochs
/// without an improvement of more than `threshold`, multiplies the rate by `factor`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReduceLrOnPlateau {
    /// Settings.
    pub cfg: PlateauConfig,
    /// Best metric so far (`None` before the first epoch).
    pub best: Option<f64>,
    /// Epochs since the last improvement.
    pub bad_epochs: usize,
}

impl ReduceLrOnPlateau {
    /// A fresh scheduler.
    pub fn new(cfg: PlateauConfig) -> Self {
        Self {
            cfg,
            best: None,
            bad_epochs: 0,
        }
    }

    /// Records this epoch's `metric` and returns the learning rate to use next.
    pub fn step(&mut self, metric: f64, lr: f64) -> f64 {
        match self.best {
            Some(b) if metric <= b + self.cfg.threshold => {
                self.bad_epochs += 1;
                if self.bad_epochs > self.cfg.patience {
                    self.bad_epochs = 0;
                    return (lr * self.cfg.factor).max(self.cfg.min_lr);
                }
            }
            _ => {
                self.best = Some(metric);
                self.bad_epochs = 0;
            }
        }
        lr
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn adamw_matches_the_pytorch_update_rule() {
        // One parameter, two steps, worked by hand with torch.optim.AdamW's formulas.
        let w = Var::from_slice(&[1.0f64, -2.0], 2, &Device::Cpu).unwrap();
        let cfg = AdamWConfig {
            lr: 0.1,
            weight_decay: 0.01,
            ..AdamWConfig::default()
        };
        let mut opt = AdamW::new(vec![("w".into(), w.clone())], cfg).unwrap();
        for _ in 0..2 {
            let loss = w.as_tensor().sqr().unwrap().sum_all().unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
        }
        // Reference computed in f64 by the same rule written out scalar-wise.
        let mut p = [1.0f64, -2.0];
        let (mut m, mut v) = ([0.0f64; 2], [0.0f64; 2]);
        for t in 1..=2 {
            for i in 0..2 {
                let g = 2.0 * p[i];
                p[i] *= 1.0 - 0.1 * 0.01;
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                let mh = m[i] / (1.0 - 0.9f64.powi(t));
                let vh = v[i] / (1.0 - 0.999f64.powi(t));
                p[i] -= 0.1 * mh / (vh.sqrt() + 1e-8);
            }
        }
        let got: Vec<f64> = w.as_tensor().to_vec1().unwrap();
        for i in 0..2 {
            assert!((got[i] - p[i]).abs() < 1e-12, "{got:?} vs {p:?}");
        }
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let w = Var::from_slice(&[3.0f64, 4.0], 2, &Device::Cpu).unwrap();
        let vars = vec![("w".to_string(), w.clone())];
        // loss = 0.5·|w|² → grad = w, norm 5.
        let mut g = (w.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5)
            .unwrap()
            .backward()
            .unwrap();
        let n = clip_grad_norm(&mut g, &vars, 1.0).unwrap();
        assert!((n - 5.0).abs() < 1e-12);
        let gv: Vec<f64> = g.get(w.as_tensor()).unwrap().to_vec1().unwrap();
        assert!((gv[0] - 0.6).abs() < 1e-6 && (gv[1] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn plateau_reduces_after_patience_epochs() {
        let mut s = ReduceLrOnPlateau::new(PlateauConfig {
            patience: 2,
            ..PlateauConfig::default()
        });
        let mut lr = 1.0;
        for m in [0.5, 0.6, 0.6, 0.6] {
            lr = s.step(m, lr);
        }
        assert!((lr - 1.0).abs() < 1e-12);
        lr = s.step(0.55, lr);
        assert!((lr - 0.5).abs() < 1e-12);
    }
}
