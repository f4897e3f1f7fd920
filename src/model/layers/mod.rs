//! Shared candle layers, each a struct with a `VarBuilder` constructor and `Module` /
//! `ModuleT` impl, so that the same code builds a network for training (`VarMap`) and
//! for inference (weights from a model file). Tensor names mirror the struct tree
//! (`vb.pp("name")`); norms and recurrent layers use PyTorch's tensor names.
//!
//! Every layer with a backward pass has a finite-difference gradient check in its
//! tests: candle 0.11 has silently wrong gradients for some of its own operations.
//!
//! Layers that mix or pool along time also run on zero-padded batches of clips of
//! different lengths (`forward_masked` with a [`TimeMask`]): padding never counts, and
//! without padding they take exactly their unmasked code.

pub mod activation;
pub mod affinity_mixup;
pub mod atp;
pub mod batch_norm;
pub mod context_attention;
pub mod conv;
pub mod crnn_encoder;
pub mod decoder;
pub(crate) mod fast;
#[cfg(test)]
pub(crate) mod gradcheck;
pub mod gru;
mod gru_op;
pub mod heads;
mod im2col;
pub mod init;
pub mod interp;
pub mod mask;
pub mod max_pool;
pub mod pool;
pub mod vgg;

pub use activation::LeakyRelu;
pub use affinity_mixup::{mix_decoder, mix_encoder, Affinity, EncoderAffinity};
pub use atp::{AtpHead, AtpOutput};
pub use batch_norm::BatchNorm;
pub use context_attention::{AdditiveAttention, AttentionOutput};
pub use conv::{Conv2d, Conv2dGeometry, Conv2dSame, ConvBlock, ConvBnRelu};
pub use crnn_encoder::{CrnnEncoder, EncoderBlock, EncoderSpec};
pub use decoder::ConvDecoder;
pub use gru::{BiGru, Gru};
pub use heads::{AttentionPool, ClipPooling, FrequencyAttention, TwoStepAttentionPool};
pub use init::{seeded_var_builder, SeededVarMap, ShapeRecorder};
pub use interp::{
    interpolate_linear, interpolate_nearest, linear_positions, nearest_positions, Upsample,
};
pub use mask::{TimeMask, PAD_LOGIT};
pub use max_pool::MaxPool2d;
pub use pool::{linear_softmax_pool, linear_softmax_pool_masked, LpPool2d};
pub use vgg::{avg_pool3_same, VggBlock, VggStack};
