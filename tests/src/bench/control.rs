//! Part 3 and 4: the control plane.
