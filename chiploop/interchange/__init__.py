"""Network interchange through NIR (the Neuromorphic Intermediate Representation).

`nirfile` reads and checks a NIR file into plain nodes, `chain` orders them into layers, `mapping`
puts the layers on a chip profile (with a report of what was quantized, clipped or dropped),
`export` writes a chiploop network back to NIR as deployed, `deploy` compares software and chip.
"""
