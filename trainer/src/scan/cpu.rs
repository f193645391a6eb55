//! `NdArray<f32>`: the CPU backend of the trainer.

use burn::backend::NdArray;

use super::ScanBackend;

impl ScanBackend for NdArray<f32> {}
