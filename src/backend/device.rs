//! Choosing where and in which precision the model runs: `auto`, `cpu`, `cuda` or
//! `cuda:N`, in f32 or bf16.

use candle_core::{DType, Device};

use crate::Error;

/// The candle device named by `name`: `auto`, `cpu`, `cuda` (device 0) or `cuda:N`.
///
/// `auto` is the first GPU when this build has candle's CUDA backend and a GPU answers,
/// otherwise the CPU; the choice is logged.
pub fn parse(name: &str) -> crate::Result<Device> {
    let name = name.trim().to_ascii_lowercase();
    match name.as_str() {
        "auto" => Ok(auto()),
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::new_cuda(0)?),
        _ => match name.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(ordinal)) => Ok(Device::new_cuda(ordinal)?),
            _ => Err(Error::InvalidArgument(format!(
                "unknown device {name:?}: expected auto, cpu, cuda or cuda:N"
            ))),
        },
    }
}

/// Whether `name` asks for the automatic choice.
pub fn is_auto(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("auto")
}

/// The first CUDA device if there is one this build can use, else the CPU.
fn auto() -> Device {
    if !candle_core::utils::cuda_is_available() {
        tracing::info!("device auto: cpu (this build has no CUDA backend)");
        return Device::Cpu;
    }
    match Device::new_cuda(0) {
        Ok(device) => {
            tracing::info!("device auto: cuda:0");
            device
        }
        Err(e) => {
            tracing::info!(reason = %e, "device auto: cpu (no usable CUDA device)");
            Device::Cpu
        }
    }
}

/// The name of `device`, as `parse` accepts it.
pub fn name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_string(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// The floating-point type inference runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Precision {
    /// 32-bit floats: exact, every device.
    #[default]
    F32,
    /// bfloat16 weights and activations: CUDA only.
    Bf16,
}

impl Precision {
    /// The candle dtype.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
        }
    }

    /// `f32` or `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// The device named by `name` and the precision to run in there.
///
/// bf16 is for CUDA: asked for on an explicit `cpu` it is refused; when `auto` ends up
/// on the CPU it becomes f32 with a warning, so one setting serves machines with and
/// without a GPU.
pub fn select(name: &str, precision: Precision) -> crate::Result<(Device, Precision)> {
    let device = parse(name)?;
    let precision = precision_for(&device, is_auto(name), precision)?;
    Ok((device, precision))
}

/// The precision [`select`] settles on for `device`, chosen by `auto` or not.
pub fn precision_for(
    device: &Device,
    auto: bool,
    precision: Precision,
) -> crate::Result<Precision> {
    if precision == Precision::Bf16 && device.is_cpu() {
        if !auto {
            return Err(Error::InvalidArgument(
                "bf16 inference needs a CUDA device; use --dtype f32 on the CPU".to_string(),
            ));
        }
        tracing::warn!("device auto chose the CPU: running f32 instead of bf16");
        return Ok(Precision::F32);
    }
    Ok(precision)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_refuses_nonsense() {
        assert!(matches!(parse(" CPU ").unwrap(), Device::Cpu));
        assert_eq!(name(&parse("cpu").unwrap()), "cpu");
        let err = parse("tpu:3").unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert!(parse("cuda:x").is_err());
    }

    #[test]
    fn auto_is_the_cpu_without_cuda() {
        let device = parse("Auto").unwrap();
        if !candle_core::utils::cuda_is_available() {
            assert!(device.is_cpu());
        }
        assert!(is_auto(" auto"));
    }

    #[test]
    fn bf16_is_refused_on_an_explicit_cpu_and_downgraded_under_auto() {
        let err = select("cpu", Precision::Bf16).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        let (device, precision) = select("auto", Precision::Bf16).unwrap();
        if device.is_cpu() {
            assert_eq!(precision, Precision::F32);
        } else {
            assert_eq!(precision, Precision::Bf16);
        }
        let (_, precision) = select("cpu", Precision::F32).unwrap();
        assert_eq!(precision.dtype(), DType::F32);
    }
}
