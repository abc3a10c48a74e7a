//! The flow methods a model can be trained and served with: one type for the model
//! folder's `config.json`, the trainer's cache and every command line.

use serde::{Deserialize, Serialize};

use candle_core::Device;

use super::{Flow, FlowError, GrayImage, Tvl1Params, tvl1, tvl1_batch};

/// How optical flow is computed. Serialised in lower case (`"fast"`), the name config
/// files, caches and flags use. Serving and training compute flow through
/// [`FlowMethod::compute`] and [`FlowMethod::compute_batch`], so a new method is a variant
/// here, its parameters and, for a new algorithm, its module and the two dispatches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FlowMethod {
    /// TV-L1 with OpenCV's defaults ([`Tvl1Params::accurate`]): best accuracy.
    Accurate,
    /// TV-L1 with fewer scales and iterations ([`Tvl1Params::fast`]): several times faster.
    Fast,
}

impl FlowMethod {
    /// The method's TV-L1 parameters.
    pub fn params(self) -> Tvl1Params {
        match self {
            FlowMethod::Accurate => Tvl1Params::accurate(),
            FlowMethod::Fast => Tvl1Params::fast(),
        }
    }

    /// The flow from `prev` to `next`, on the CPU.
    pub fn compute(self, prev: &GrayImage, next: &GrayImage) -> Flow {
        tvl1(prev, next, &self.params())
    }

    /// The flows of every pair `(prev[i], next[i])` in one batched call on `device` (the
    /// GPU a served model runs on).
    pub fn compute_batch(
        self,
        prev: &[GrayImage],
        next: &[GrayImage],
        device: &Device,
    ) -> Result<Vec<Flow>, FlowError> {
        tvl1_batch(prev, next, &self.params(), device)
    }

    /// Its name, as serialised.
    pub fn name(self) -> &'static str {
        match self {
            FlowMethod::Accurate => "accurate",
            FlowMethod::Fast => "fast",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FlowMethod;

    #[test]
    fn config_files_and_flags_use_one_name() {
        for m in [FlowMethod::Accurate, FlowMethod::Fast] {
            assert_eq!(
                serde_json::to_string(&m).unwrap(),
                format!("\"{}\"", m.name())
            );
            let parsed = <FlowMethod as clap::ValueEnum>::from_str(m.name(), false).unwrap();
            assert_eq!(parsed, m);
        }
    }
}
