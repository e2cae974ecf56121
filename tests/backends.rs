//! Every backend against the portable one, through `common::assert_backends_agree`: all lengths
//! around block and batch boundaries, the disk data-unit sizes, many units per call, unit numbers near
//! 2^32 and 2^64-1, tweak steps 1 and 8, serial and parallel.

mod common;

use common::{Call, assert_backends_agree, pattern};
use sectorcrypt::DataUnits;

/// Numbers whose plain64 encodings cross byte and word boundaries.
const NUMBERS: [u64; 8] = [0, 1, 0xff, 0xffff_ffff - 1, 0xffff_ffff, 1 << 32, u64::MAX - 1, u64::MAX];

#[test]
fn every_length_up_to_1024() {
    for len in 16..=1024 {
        assert_backends_agree(&pattern(len, len as u64), Call::Unit(NUMBERS[len % NUMBERS.len()]));
    }
}

#[test]
fn every_multiple_of_16_up_to_4096() {
    for len in (16..=4096).step_by(16) {
        assert_backends_agree(&pattern(len, len as u64), Call::Unit(NUMBERS[len / 16 % NUMBERS.len()]));
    }
}

#[test]
fn single_units_at_disk_sizes_and_odd_neighbours() {
    for size in [512usize, 4096, 16384, 65536, 131072] {
        for len in [size - 17, size - 16, size - 1, size, size + 1, size + 15, size + 16, size + 17] {
            for number in [0xffff_ffff, u64::MAX] {
                assert_backends_agree(&pattern(len, len as u64), Call::Unit(number));
            }
        }
    }
}

#[test]
fn many_units_per_call() {
    for size in [512usize, 4096, 16384, 65536, 131072] {
        let total = (512 * 1024).max(4 * size);
        for step in [1u64, 8] {
            for (first, tail) in [(0u64, 0usize), (0xffff_fff0, 16), (0xffff_ffff, 100)] {
                let units = DataUnits::new(size).unwrap().starting_at(first).with_step(step).unwrap();
                let len = total - size + if tail == 0 { size } else { tail };
                assert_backends_agree(&pattern(len, size as u64 ^ step), Call::Units(units));
            }
        }
    }
}

#[test]
fn unit_counts_around_tweak_batches() {
    // Kernels encrypt the tweaks of several units together and pair 512-byte units up: every count
    // of whole units from one to a few batches, with and without a short last unit.
    for size in [512usize, 1024, 4096] {
        for count in 1..=13 {
            for tail in [0usize, 16, 33] {
                let units = DataUnits::new(size).unwrap().starting_at(0xffff_fffe).with_step(1).unwrap();
                let len = count * size + tail;
                assert_backends_agree(&pattern(len, (count * 31 + tail) as u64), Call::Units(units));
            }
        }
    }
}

#[test]
fn parallel_path_matches_serial() {
    for size in [512usize, 4096, 131072] {
        for step in [1u64, 8] {
            // Above the parallel threshold, with a short last unit.
            let len = 3 * 1024 * 1024 + 4096 + 48;
            let units = DataUnits::new(size).unwrap().starting_at(0xffff_0000).with_step(step).unwrap();
            assert_backends_agree(&pattern(len, 77), Call::Parallel(units));
        }
    }
}

#[test]
fn unit_numbers_up_to_the_last_one() {
    for size in [512usize, 4096] {
        for step in [1u64, 8] {
            let count = 20u64;
            let first = u64::MAX - (count - 1) * step;
            let units = DataUnits::new(size).unwrap().starting_at(first).with_step(step).unwrap();
            let len = count as usize * size;
            assert_backends_agree(&pattern(len, step), Call::Units(units));
            assert_backends_agree(&pattern(len, step), Call::Parallel(units));
        }
    }
}
