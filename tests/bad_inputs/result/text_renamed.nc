allocation: one bess-0.5 at bus 2
