"""BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding.

Jacob Devlin, Ming-Wei Chang, Kenton Lee, Kristina Toutanova. NAACL 2019. arXiv:1810.04805.
Catalogue id 001:133:1.

Input representation (Sec. 3, Fig. 2): ``[CLS] A [SEP] B [SEP]``, each token embedded as

    e_t = LayerNorm(E_token[x_t] + E_position[t] + E_segment[s_t])      (learned positions, s_t ∈ {A, B})

then L post-LN Transformer encoder blocks (bidirectional self-attention, GELU feed-forward)

    h ← LayerNorm(h + Dropout(MultiHead(h, h, h)))
    h ← LayerNorm(h + Dropout(W2 GELU(W1 h + b1) + b2)),     GELU(x) = x Φ(x)

and the pooler p = tanh(W_p h_[CLS] + b_p). Pre-training (Sec. 3.1, Appendix A.1):

    masked LM     choose 15 % of the token positions; replace a chosen token by [MASK] 80 % of the time,
                  by a random token 10 %, keep it 10 %; loss = −Σ_{chosen t} log softmax(W_o g(h_t) + b)[x_t]
                  with g(h) = LayerNorm(GELU(W h + b)) and W_o = E_tokenᵀ (tied to the input embedding)
    next sentence (optional) −log softmax(W_nsp p)[IsNext], B the true next sentence half of the time

Fine-tuning (Sec. 3.2): softmax(W_c Dropout(p)) over the labels, every weight trained. The ablation
(Sec. 5.1) replaces the masked LM by a left-to-right LM: the same encoder under a causal mask,
loss −Σ_t log p(x_{t+1} | x_{≤t}), the left-only mask also kept at fine-tuning.

    from papers.language.bert import BertConfig, BertForPreTraining, BertForSequenceClassification
    model = BertForPreTraining(BertConfig(vocab_size=30, hidden_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, intermediate_size=256))
    token_logits, nsp_logits = model(input_ids, token_type_ids, attention_mask)
    model.save_pretrained("dir")
    classifier = BertForSequenceClassification.from_pretrained("dir", num_labels=3)
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="bert",
    papers=Paper(
        "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding",
        "Jacob Devlin, Ming-Wei Chang, Kenton Lee, Kristina Toutanova",
        2019,
        venue="NAACL",
        arxiv="1810.04805",
        catalog_ids=("001:133:1",),
    ),
    claim=(
        "Masked-LM (bidirectional) pre-training gives better fine-tuned accuracy on a small labelled task "
        "that needs right context than left-to-right LM pre-training of the same network at equal compute, "
        "which in turn beats no pre-training."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Toy scale: a 2-layer BERT pre-trained on a PCFG corpus with the masked LM vs a causal LM (same "
        "steps, batches, tokens) vs random init, each fine-tuned on 200 labelled sentences to tell whether "
        "and what kind of object the main verb takes; test accuracy over seeds."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "BertConfig": "model",
        "BertEmbeddings": "model",
        "BertForPreTraining": "model",
        "BertForSequenceClassification": "model",
        "BertLayer": "model",
        "BertModel": "model",
        "mlm_loss": "model",
        "next_token_loss": "model",
        "to_transformers_state_dict": "model",
    },
)
