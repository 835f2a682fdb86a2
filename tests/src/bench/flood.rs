//! Part 2: SYN flood over veth.
