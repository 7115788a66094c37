"""Network interchange through NIR (the Neuromorphic Intermediate Representation).

`nirfile` reads and checks a NIR file into plain nodes, `chain` orders them into layers, `mapping`
puts the layers on a chip profile (with notes on what was quantized, clipped or dropped),
`importer` does all three in one call, `export` writes a chiploop network back to NIR as
deployed, `deploy` compares software and chips, `cli` holds `chiploop deploy` and `export`.
"""
