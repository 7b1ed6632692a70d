//! The feed-forward activations the backends run, and the names checkpoint configs give them
//! (`hidden_act`, `activation`, `dense_act_fn`). Each family applies them with its own kernels
//! and refuses the ones it has none for.

/// A feed-forward activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// The exact (erf) GELU, `"gelu"`.
    Gelu,
    /// The tanh approximation of GELU, `"gelu_new"`, `"gelu_pytorch_tanh"`, `"gelu_approximate"`.
    GeluTanh,
    /// max(x, 0), `"relu"`.
    Relu,
    /// x·sigmoid(x), `"silu"`, `"swish"`.
    Silu,
}

impl Activation {
    /// The activation a config names, or `None` for a name no backend runs.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "gelu" => Some(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_approximate" => Some(Self::GeluTanh),
            "relu" => Some(Self::Relu),
            "silu" | "swish" => Some(Self::Silu),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_the_union_of_what_the_families_read() {
        for (name, activation) in [
            ("gelu", Activation::Gelu),
            ("gelu_new", Activation::GeluTanh),
            ("gelu_pytorch_tanh", Activation::GeluTanh),
            ("gelu_approximate", Activation::GeluTanh),
            ("relu", Activation::Relu),
            ("silu", Activation::Silu),
            ("swish", Activation::Silu),
        ] {
            assert_eq!(Activation::from_name(name), Some(activation), "{name}");
        }
        for unknown in ["", "tanh", "gelu_fast", "Gelu", "gated-gelu"] {
            assert_eq!(Activation::from_name(unknown), None, "{unknown}");
        }
    }
}
