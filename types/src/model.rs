//! The three small enums every requirement names: [`ModelType`], [`DevicePreference`] and
//! [`Precision`], each with one spelling in settings, logs and status.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Invalid;

/// The kind of work a model does. Written as in the WIT (`text-generation`); settings may also
/// write `text_generation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelType {
    /// Text to a fixed-size vector.
    #[default]
    Embedding,
    /// Encoder-decoder generation.
    #[serde(rename = "text2text")]
    Text2Text,
    /// Decoder-only generation.
    #[serde(alias = "text_generation")]
    TextGeneration,
    /// Sequence classification.
    Classification,
}

impl fmt::Display for ModelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Embedding => "embedding",
            Self::Text2Text => "text2text",
            Self::TextGeneration => "text-generation",
            Self::Classification => "classification",
        })
    }
}

/// Where a module would like its model to run: `"auto"`, `"cpu"`, `"cuda"` or `"cuda:N"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DevicePreference {
    /// The host chooses.
    #[default]
    Auto,
    /// The host CPU.
    Cpu,
    /// Any CUDA GPU.
    Cuda,
    /// One CUDA GPU by ordinal.
    CudaOrdinal(u32),
}

impl FromStr for DevicePreference {
    type Err = Invalid;

    /// Parses `"auto"`, `"cpu"`, `"cuda"` or `"cuda:N"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            _ => s
                .strip_prefix("cuda:")
                // Digits only: `u32::from_str` would also take a sign (`cuda:+1`).
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse().ok())
                .map(Self::CudaOrdinal)
                .ok_or_else(|| {
                    Invalid::new(format!(
                        "unknown device '{s}'; expected \"auto\", \"cpu\", \"cuda\" or \"cuda:N\""
                    ))
                }),
        }
    }
}

impl fmt::Display for DevicePreference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda => f.write_str("cuda"),
            Self::CudaOrdinal(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl<'de> Deserialize<'de> for DevicePreference {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for DevicePreference {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How exactly a model's arithmetic follows the reference implementation: `"exact"` or `"fast"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 throughout, equal to the reference to rounding.
    #[default]
    Exact,
    /// Reduced-precision matrix products where the device has fast instructions for them.
    Fast,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Exact => "exact",
            Self::Fast => "fast",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_has_one_spelling_and_reads_back() {
        for device in [
            DevicePreference::Auto,
            DevicePreference::Cpu,
            DevicePreference::Cuda,
            DevicePreference::CudaOrdinal(3),
        ] {
            let text = serde_json::to_string(&device).unwrap();
            assert_eq!(text, format!("\"{device}\""));
            assert_eq!(
                serde_json::from_str::<DevicePreference>(&text).unwrap(),
                device
            );
        }
        for model_type in [
            ModelType::Embedding,
            ModelType::Text2Text,
            ModelType::TextGeneration,
            ModelType::Classification,
        ] {
            let text = serde_json::to_string(&model_type).unwrap();
            assert_eq!(text, format!("\"{model_type}\""));
        }
        let snake: ModelType = serde_json::from_str("\"text_generation\"").unwrap();
        assert_eq!(snake, ModelType::TextGeneration);
        assert!("tpu".parse::<DevicePreference>().is_err());
        assert!("cuda:x".parse::<DevicePreference>().is_err());
        assert!("cuda:+1".parse::<DevicePreference>().is_err());
    }
}
