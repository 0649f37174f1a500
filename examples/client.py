"""Inpaint through the Space's one public endpoint, ``/inpaint``, with gradio_client.

    python examples/client.py [URL_OR_SPACE_ID] [IMAGE]    # default: a local `python app.py`, examples/face1.png

Prints the path of each result PNG (with compare=True: the n=r results, then the n=1 ones).
"""

import sys
from pathlib import Path

from gradio_client import Client, handle_file

url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:7860/"  # or the Space's id, owner/name
image = sys.argv[2] if len(sys.argv) > 2 else str(Path(__file__).with_name("face1.png"))

client = Client(url, verbose=False)
results = client.predict(
    handle_file(image),  # image: any size and format
    "every_second_line",  # mask: a preset name, or handle_file("mask.png") (white = fill)
    "bundled",  # model: a registry name the Space offers
    50,  # steps T
    5,  # jump_length j
    5,  # jump_n_sample r (the paper's n)
    0,  # seed of the first sample
    1,  # num_samples
    False,  # compare: also the n=1 run of the same seeds
    api_name="/inpaint",
)  # optional keywords: size="full" | "model" | "auto"; class_label=504 for the class-conditional imagenet model
for result in results:
    print(result["image"])
