//! Building blocks: a two-layer MLP and the pre-norm transformer block of L_theta.

use tch::nn::{self, Module};
use tch::Tensor;

/// `Linear -> GELU -> Linear`.
#[derive(Debug)]
pub struct Mlp {
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl Mlp {
    /// `inp -> hidden -> out`; variables under `path` (`fc1`, `fc2`).
    pub fn new(path: nn::Path<'_>, inp: i64, hidden: i64, out: i64) -> Self {
        Self { fc1: nn::linear(&path / "fc1", inp, hidden, Default::default()), fc2: nn::linear(&path / "fc2", hidden, out, Default::default()) }
    }

    /// Like [`Mlp::new`] with the output layer initialised to zero, so the MLP starts as the zero
    /// map (decoders of residuals start from "no change").
    pub fn zero_out(path: nn::Path<'_>, inp: i64, hidden: i64, out: i64) -> Self {
        let cfg = nn::LinearConfig { ws_init: nn::Init::Const(0.0), bs_init: Some(nn::Init::Const(0.0)), bias: true };
        Self { fc1: nn::linear(&path / "fc1", inp, hidden, Default::default()), fc2: nn::linear(&path / "fc2", hidden, out, cfg) }
    }

    /// `[.., inp] -> [.., out]`.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        self.fc2.forward(&self.fc1.forward(xs).gelu("tanh"))
    }
}

/// Pre-norm transformer block: `x + MHA(LN(x))`, then `x + MLP(LN(x))` over tokens `[B, T, d]`.
#[derive(Debug)]
pub struct Block {
    ln1: nn::LayerNorm,
    qkv: nn::Linear,
    proj: nn::Linear,
    ln2: nn::LayerNorm,
    mlp: Mlp,
    heads: i64,
}

impl Block {
    /// A block of width `d` with `heads` heads and MLP width `mlp_ratio * d`.
    pub fn new(path: nn::Path<'_>, d: i64, heads: i64, mlp_ratio: i64) -> Self {
        Self {
            ln1: nn::layer_norm(&path / "ln1", vec![d], Default::default()),
            qkv: nn::linear(&path / "qkv", d, 3 * d, Default::default()),
            proj: nn::linear(&path / "proj", d, d, Default::default()),
            ln2: nn::layer_norm(&path / "ln2", vec![d], Default::default()),
            mlp: Mlp::new(&path / "mlp", d, mlp_ratio * d, d),
            heads,
        }
    }

    /// Self-attention over the T tokens; `[B, T, d] -> [B, T, d]`.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let (b, t, d) = xs.size3().expect("block input is [B, T, d]");
        let hd = d / self.heads;
        let qkv = self.qkv.forward(&self.ln1.forward(xs)).view([b, t, 3, self.heads, hd]).permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2)); // [B, H, T, hd]
        let att = (q.matmul(&k.transpose(-2, -1)) * (1.0 / (hd as f64).sqrt())).softmax(-1, q.kind());
        let y = att.matmul(&v).transpose(1, 2).contiguous().view([b, t, d]);
        let xs = xs + self.proj.forward(&y);
        &xs + self.mlp.forward(&self.ln2.forward(&xs))
    }
}
