//! `ipscope devices`: the compute devices ipscope can use (GPU adapters through wgpu:
//! Vulkan, Metal, DX12), with the limits that decide how large a field fits on each.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use ipscope::gpu::{list_adapters, AdapterSummary};

#[derive(Args)]
pub struct Cmd {
    /// One JSON object per adapter instead of text.
    #[arg(long)]
    json: bool,
}

fn to_json(a: &AdapterSummary) -> serde_json::Value {
    serde_json::json!({
        "name": a.name,
        "backend": a.backend,
        "type": a.device_type,
        "driver": a.driver,
        "max_storage_buffer_binding_size": a.max_storage_buffer_binding_size,
        "max_buffer_size": a.max_buffer_size,
        "max_compute_workgroups_per_dimension": a.max_compute_workgroups_per_dimension,
        "max_compute_invocations_per_workgroup": a.max_compute_invocations_per_workgroup,
    })
}

pub fn dispatch(cmd: Cmd) -> Result<ExitCode> {
    let adapters = list_adapters();
    if cmd.json {
        for a in &adapters {
            println!("{}", to_json(a));
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!("cpu: always available ({} threads)", cpu_threads());
    if adapters.is_empty() {
        println!(
            "no GPU adapter found (Vulkan, Metal, DX12); on Linux without a GPU, Mesa's \
             lavapipe (package mesa-vulkan-drivers) provides a CPU Vulkan device for testing"
        );
    }
    for (i, a) in adapters.iter().enumerate() {
        println!("gpu {i}: {} ({}, {})", a.name, a.backend, a.device_type);
        if !a.driver.is_empty() {
            println!("    driver: {}", a.driver);
        }
        if a.is_software_renderer() {
            println!(
                "    a software renderer on the CPU (for testing): --device gpu uses it, \
                 --device auto does not"
            );
        }
        println!(
            "    max storage binding: {} MiB, max buffer: {} MiB, max workgroups per dimension: {}, max invocations per workgroup: {}",
            a.max_storage_buffer_binding_size >> 20,
            a.max_buffer_size >> 20,
            a.max_compute_workgroups_per_dimension,
            a.max_compute_invocations_per_workgroup
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn cpu_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
