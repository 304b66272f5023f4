"""BibTeX entries that several families' cards cite."""

WAVLM_CITATION = """
@article{chen2022wavlm,
  title={WavLM: Large-Scale Self-Supervised Pre-Training for Full Stack Speech Processing},
  author={Chen, Sanyuan and Wang, Chengyi and Chen, Zhengyang and Wu, Yu and Liu, Shujie and Chen, Zhuo and Li, Jinyu and Kanda, Naoyuki and Yoshioka, Takuya and Xiao, Xiong and Wu, Jian and Zhou, Long and Ren, Shuo and Qian, Yanmin and Qian, Yao and Wu, Jian and Zeng, Michael and Yu, Xiangzhan and Wei, Furu},
  journal={IEEE Journal of Selected Topics in Signal Processing},
  volume={16},
  number={6},
  pages={1505--1518},
  year={2022}
}"""
DPSLM_CITATION = """
@article{visser2025dpslm,
  title={Spoken Language Modeling with Duration-Penalized Self-Supervised Units},
  author={Visser, Nicol and Kamper, Herman},
  journal={arXiv preprint arXiv:2505.23494},
  year={2025}
}

@article{kamper2022dpdp,
  title={Word Segmentation on Discovered Phone Units with Dynamic Programming and Self-Supervised Scoring},
  author={Kamper, Herman},
  journal={arXiv preprint arXiv:2202.11929},
  year={2022}
}"""
ELLAV_CITATION = """
@article{song2024ellav,
  title={ELLA-V: Stable Neural Codec Language Modeling with Alignment-guided Sequence Reordering},
  author={Song, Yakun and Chen, Zhuo and Wang, Xiaofei and Ma, Ziyang and Chen, Xie},
  journal={arXiv preprint arXiv:2401.07333},
  year={2024}
}"""
POLYAK_CITATION = """
@inproceedings{polyak2021speech,
  title = {Speech Resynthesis from Discrete Disentangled Self-Supervised Representations},
  author = {Polyak, Adam and Adi, Yossi and Copet, Jade and Kharitonov, Eugene and Lakhotia, Kushal and Hsu, Wei-Ning and Mohamed, Abdelrahman and Dupoux, Emmanuel},
  booktitle = {Proceedings of Interspeech},
  year = {2021}
}"""
