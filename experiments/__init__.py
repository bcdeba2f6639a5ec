"""Paper reproduction kit: Table 2 (`python -m experiments.table2`) and the Figure 3 ablation
(`python -m experiments.figure3`). Scripts over train.py / evaluate.py; the library never
imports this package."""
