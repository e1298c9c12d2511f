"""riskstream's streaming side: Faust agents wiring a functional core of small, pure steps."""
