//! `ipscope` subcommands for stats (placeholder until they are written).

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum Cmd {}

pub fn dispatch(cmd: Cmd) -> Result<ExitCode> {
    match cmd {}
}
