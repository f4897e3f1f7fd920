//! The offline trainer (`hark train`, `hark tune`, `hark synth`): datasets with weak,
//! strong and soft labels and a feature cache, soundscape synthesis, augmentation, a
//! balanced sampler, the training losses, AdamW with ReduceLROnPlateau, the training
//! loop over any [`crate::model::arch::SedNet`], and per-class threshold tuning.

pub mod loss;
