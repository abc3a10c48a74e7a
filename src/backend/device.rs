//! Parsing a device name (`cpu`, `cuda`, `cuda:N`) into a candle device.

use candle_core::Device;

use crate::Error;

/// The candle device named by `name`: `cpu`, `cuda` (device 0) or `cuda:N`.
pub fn parse(name: &str) -> crate::Result<Device> {
    let name = name.trim().to_ascii_lowercase();
    match name.as_str() {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::new_cuda(0)?),
        _ => match name.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(ordinal)) => Ok(Device::new_cuda(ordinal)?),
            _ => Err(Error::InvalidArgument(format!(
                "unknown device {name:?}: expected cpu, cuda or cuda:N"
            ))),
        },
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
}
