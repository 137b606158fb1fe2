"""ELECTRA: Pre-training Text Encoders as Discriminators Rather Than Generators.

Kevin Clark, Minh-Thang Luong, Quoc V. Le, Christopher D. Manning. ICLR 2020. arXiv:2003.10555.
Catalogue id 001:10:1.

Replaced-token detection (Sec. 2). For an input x = [x_1, ..., x_n], choose the masked positions m
(each token with probability 15 %) and replace them by [MASK]:

    x^masked   = REPLACE(x, m, [MASK])
    p_G(x_t | x^masked) = softmax(e(x_t)ᵀ h_G(x^masked)_t)            the generator, a small masked LM
    x̂_i ~ p_G(x_i | x^masked) for i ∈ m,   x^corrupt = REPLACE(x, m, x̂)   (sampled, not argmax)
    D(x^corrupt, t) = sigmoid(wᵀ h_D(x^corrupt)_t)                    the discriminator, on EVERY token
    L_MLM(x, θ_G)  = E[ Σ_{i ∈ m} −log p_G(x_i | x^masked) ]
    L_Disc(x, θ_D) = E[ Σ_{t=1}^{n} −1(x^corrupt_t = x_t) log(1 − D(x^corrupt, t))
                                     −1(x^corrupt_t ≠ x_t) log D(x^corrupt, t) ]
    min_{θ_G, θ_D}  Σ_{x ∈ X}  L_MLM(x, θ_G) + λ L_Disc(x, θ_D),      λ = 50

A sampled token equal to the original counts as "original". No gradient flows through the sampling:
the generator is trained by maximum likelihood only, not adversarially. Generator and discriminator
share the token and position embeddings (Sec. 3.2); the generator is smaller (1/4–1/2 of the
discriminator's width works best, Fig. 3). Only the discriminator is fine-tuned. The "ELECTRA 15 %"
ablation (Sec. 3.2, Table 5) computes L_Disc only over the masked positions i ∈ m.

    from papers.language.bert import BertConfig
    from papers.language.electra import ElectraForPreTraining
    model = ElectraForPreTraining(BertConfig(vocab_size=30, hidden_size=64, num_hidden_layers=2,
                                             num_attention_heads=4, intermediate_size=256),
                                  generator_fraction=0.25, disc_weight=50.0)
    out = model(input_ids, token_type_ids, attention_mask, mask_id=4, special_ids=[0, 1, 2, 3, 4])
    out["loss"].backward()                       # L_MLM + 50 L_Disc
    model.discriminator.bert.save_pretrained("dir")   # then BertForSequenceClassification.from_pretrained
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="electra",
    papers=Paper(
        "ELECTRA: Pre-training Text Encoders as Discriminators Rather Than Generators",
        "Kevin Clark, Minh-Thang Luong, Quoc V. Le, Christopher D. Manning",
        2020,
        venue="ICLR",
        arxiv="2003.10555",
        catalog_ids=("001:10:1",),
    ),
    claim=(
        "At equal pre-training compute, an ELECTRA discriminator (replaced-token detection on every token, "
        "tokens sampled from a small MLM generator) fine-tunes at least as well as a masked-LM (BERT) "
        "encoder, and putting the discriminator loss only on the 15 % masked tokens does worse."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Toy scale: 2-layer encoders pre-trained on a PCFG corpus with BERT's MLM, ELECTRA, and ELECTRA "
        "with the discriminator loss on the masked 15 % only, at matched FLOPs (counted); each fine-tuned "
        "on 200 labelled sentences (what kind of object the main verb takes); test accuracy over seeds."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "ElectraDiscriminator": "model",
        "ElectraForPreTraining": "model",
        "ElectraGenerator": "model",
        "discriminator_loss": "model",
        "generator_config": "model",
        "mask_positions": "model",
        "training_flops": "model",
    },
)
