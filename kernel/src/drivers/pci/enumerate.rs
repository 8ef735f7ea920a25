//! Walks the configuration space from bus 0, following bridges whose secondary bus is set.

use super::config::{Bdf, ConfigSpace, PciFunction};
use alloc::vec::Vec;

/// Every function found, in bus/device/function order of discovery. Each bus is scanned at most
/// once, so a device that claims a bus loop cannot make this run forever.
pub fn enumerate(space: &impl ConfigSpace) -> Vec<PciFunction> {
    let mut found = Vec::new();
    let mut scanned = [false; 256];
    let mut pending: Vec<u8> = Vec::from([0]);
    while let Some(bus) = pending.pop() {
        if core::mem::replace(&mut scanned[usize::from(bus)], true) {
            continue;
        }
        for device in 0..32 {
            for function in 0..8 {
                let Some(bdf) = Bdf::new(bus, device, function) else {
                    continue;
                };
                let Some(info) = PciFunction::read(space, bdf) else {
                    if function == 0 {
                        break;
                    }
                    continue;
                };
                if let Some(secondary) = info.secondary_bus.filter(|&b| b != 0) {
                    pending.push(secondary);
                }
                let single = function == 0 && !info.multi_function;
                found.push(info);
                if single {
                    break;
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::pci::config::fake::FakeSpace;

    fn bdf(bus: u8, device: u8, function: u8) -> Bdf {
        Bdf::new(bus, device, function).unwrap()
    }

    #[test]
    fn finds_q35_devices_functions_and_bridged_buses() {
        let mut space = FakeSpace::default();
        space.add(bdf(0, 0, 0), 0x8086, 0x29c0, [6, 0, 0], 0);
        space.add(bdf(0, 2, 0), 0x1af4, 0x1042, [1, 0, 0], 0);
        space.add(bdf(0, 3, 0), 0x1af4, 0x1053, [0xff, 0, 0], 0);
        // Function 1 without the multi-function bit on function 0: must not be reported.
        space.add(bdf(0, 3, 1), 0x1234, 0x5678, [0xff, 0, 0], 0);
        space.add(bdf(0, 0x1f, 0), 0x8086, 0x2918, [6, 1, 0], 0x80);
        space.add(bdf(0, 0x1f, 2), 0x8086, 0x2922, [1, 6, 1], 0);
        space.add(bdf(0, 0x1f, 3), 0x8086, 0x2930, [0xc, 5, 0], 0);
        space.add(bdf(0, 4, 0), 0x1b36, 0x000c, [6, 4, 0], 1);
        space.functions.get_mut(&bdf(0, 4, 0)).unwrap()[6] = 0x0001_0100;
        space.add(bdf(1, 0, 0), 0x1af4, 0x1041, [2, 0, 0], 0);
        let found: Vec<Bdf> = enumerate(&space).iter().map(|f| f.bdf).collect();
        assert_eq!(
            found,
            [
                bdf(0, 0, 0),
                bdf(0, 2, 0),
                bdf(0, 3, 0),
                bdf(0, 4, 0),
                bdf(0, 0x1f, 0),
                bdf(0, 0x1f, 2),
                bdf(0, 0x1f, 3),
                bdf(1, 0, 0),
            ]
        );
    }

    #[test]
    fn bus_loops_terminate() {
        let mut space = FakeSpace::default();
        // A bridge on bus 1 pointing back at bus 0, and one on bus 0 pointing at bus 1.
        space.add(bdf(0, 1, 0), 0x1b36, 0x000c, [6, 4, 0], 1);
        space.functions.get_mut(&bdf(0, 1, 0)).unwrap()[6] = 0x0001_0100;
        space.add(bdf(1, 1, 0), 0x1b36, 0x000c, [6, 4, 0], 1);
        space.functions.get_mut(&bdf(1, 1, 0)).unwrap()[6] = 0x0000_0001;
        assert_eq!(enumerate(&space).len(), 2);
        assert!(enumerate(&FakeSpace::default()).is_empty());
    }
}
