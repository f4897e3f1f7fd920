//! Shared candle layers (skeleton; the model helper fills this).
