"""Measure `metalearning adapt` of the pipeline's 5-way MAML Omniglot model on 5-way and 20-way
1-shot tasks of held-out (meta-test) characters, through the adapt API (a new 20-way output layer).

    python tools/measure_adapt_ways.py ROOT [prototypes|zero]

ROOT is a checkout after `make repro` (data/omniglot, models/omniglot/maml_omniglot_5w1s).
"""
import sys
from pathlib import Path

import torch

import metalearning.adapt_images as ai
from metalearning.data.episodes import draw_episodes, to_inputs
from metalearning.data.omniglot import omniglot_classes

root = Path(sys.argv[1])  # a pipeline checkout with data/ and models/
torch.set_num_threads(1)
head = sys.argv[2] if len(sys.argv) > 2 else "prototypes"
model = ai.load_adaptable(root / "models/omniglot/maml_omniglot_5w1s/checkpoint.pt")
classes = omniglot_classes(data_file=str(root / "data/omniglot/omniglot.npz"),
                           split_file=str(root / "data/omniglot/split.json"), split="meta_test", rotations=True)
generator = torch.Generator().manual_seed(2026)
for ways, episodes in ((5, 200), (20, 200)):
    ids = draw_episodes(classes.shape[0], classes.shape[1], ways=ways, shots=1, queries=1, tasks=episodes,
                        generator=generator)
    correct = {"transductive": 0, "non_transductive": 0}
    for t in range(episodes):
        pixels = classes[ids.class_ids[t].unsqueeze(1), ids.image_ids[t]]  # [ways, 2, H, W]
        names = tuple(f"c{i}" for i in range(ways))
        support = ai.SupportSet(to_inputs(pixels[:, 0]), torch.arange(ways), names, tuple(Path(n) for n in names),
                                Path("support"))
        query = ai.QuerySet(to_inputs(pixels[:, 1]), tuple(Path(f"q{i}") for i in range(ways)))
        adapted = ai.with_ways(model, ways, support, head_init=head) if ways != model.ways else model
        for mode in correct:
            predictions = ai.adapt_and_predict(adapted, support, query, bn_mode=mode)
            correct[mode] += int((predictions.labels == torch.arange(ways)).sum())
    print(f"{ways}-way 1-shot, {episodes} episodes of meta-test characters, {model.ways}-way model"
          + ("" if ways == model.ways else f", {head} head, {model.algorithm.eval_inner_steps} steps") + ": "
          + ", ".join(f"{mode} {100 * c / (ways * episodes):.2f}%" for mode, c in correct.items())
          + f" (chance {100 / ways:.1f}%)")
