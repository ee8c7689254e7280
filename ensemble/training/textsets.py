"""Evaluation sets for the text policies, generated (deterministically) rather than collected.

- ``benign_ads.jsonl``: ordinary ad copy naming an identity group, raw as advertisers write it
  (capitals, punctuation, prices, emoji): 30 groups x 20 product categories, none of it
  offensive or hateful (every line labelled normal). Measures false flags overall and per
  group (``meta.group``), after Dixon et al. (2018).
- ``idiom_ads.jsonl``: ordinary ad copy whose words look violent, derogatory or like a group
  out of context ("killer prices", "we exterminate rats", "Black Friday"), every line normal:
  false flags that words alone would cause.
- ``behaviour.jsonl``: functional tests in the style of HateCheck (Röttger et al. 2021): one
  ``meta.functionality`` per line with its expected class (``meta.class``: hate, offensive
  or normal) and, where it has one, the target group (``meta.group``). Besides plain
  derogation, threats and their negated or denounced forms, it frames hate as a question,
  an opinion or through a pronoun, quotes hate in order to reject it, applies HateCheck's
  spelling changes (missing word boundaries, leetspeak, swapped letters) and insults people
  who are no protected group (offensive, not hate); implicit derogation (stereotypes with no
  insult word), praise denied to a group ("X are never any good") and hate said of a group
  in the sentence after the one that names it are hate; a slur's literal other sense ("a
  bundle of faggots for the fire") and complaints about things are normal.

- ``hatecheck.jsonl``: not generated: HateCheck's own 3 728 cases
  (:func:`ensemble.training.textdata.hatecheck_ads`), written beside the sets above so that
  ``adpolicy text-check`` measures tests that nobody here wrote.

The sentences, products and spelling changes here are written apart from the training
augmentation (:mod:`ensemble.training.augment`): other templates, other wording. None of it is trained
on. Reclaimed and in-group uses of slurs are left out: Davidson's and HateXplain's annotators
label them differently (mostly offensive in one, hate or normal in the other), so no expected
class would be defensible.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ensemble.training.data import write_manifest
from ensemble.training.textdata import hatecheck_ads

# name -> (adjective as ads write it, people)
AD_GROUPS = {
    "black": ("Black", "Black customers"), "latino": ("Latino", "Latino families"),
    "asian": ("Asian", "Asian Americans"), "mexican": ("Mexican", "Mexican families"),
    "chinese": ("Chinese", "Chinese students"), "korean": ("Korean", "Korean Americans"),
    "vietnamese": ("Vietnamese", "Vietnamese families"), "filipino": ("Filipino", "Filipino nurses"),
    "indian": ("Indian", "Indian families"), "arab": ("Arab", "Arab Americans"),
    "african": ("African", "African immigrants"), "native": ("Native American", "tribal members"),
    "jewish": ("Jewish", "Jewish families"), "muslim": ("Muslim", "Muslim women"),
    "christian": ("Christian", "church groups"), "hindu": ("Hindu", "Hindu families"),
    "sikh": ("Sikh", "Sikh families"), "catholic": ("Catholic", "Catholic schools"),
    "gay": ("gay", "gay couples"), "lesbian": ("lesbian", "lesbian couples"),
    "transgender": ("transgender", "trans people"), "nonbinary": ("non-binary", "non-binary people"),
    "women": ("women's", "women"), "disabled": ("disabled", "wheelchair users"),
    "deaf": ("Deaf", "Deaf customers"), "blind": ("blind", "blind readers"),
    "autistic": ("autism-friendly", "autistic kids"), "immigrant": ("immigrant", "new immigrants"),
    "refugee": ("refugee", "refugee families"), "senior": ("senior", "seniors"),
}  # fmt: skip
# category -> products
PRODUCTS = {
    "footwear": ("sandals", "running shoes"), "apparel": ("linen shirts", "winter coats"),
    "jewellery": ("silver earrings", "handmade necklaces"), "food": ("spice blends", "pastries"),
    "restaurant": ("lunch specials", "family dinners"), "groceries": ("fresh produce", "rice"),
    "beauty": ("skincare sets", "hair care products"), "fitness": ("yoga classes", "gym memberships"),
    "travel": ("weekend getaways", "guided tours"), "education": ("tutoring", "language courses"),
    "finance": ("savings accounts", "small-business loans"), "insurance": ("home insurance", "health plans"),
    "electronics": ("headphones", "laptops"), "home": ("sofas", "kitchen sets"),
    "photography": ("portrait sessions", "wedding photography"), "books": ("novels", "children's books"),
    "music": ("guitar lessons", "concert tickets"), "health": ("dental check-ups", "eye exams"),
    "real estate": ("apartments", "starter homes"), "toys": ("board games", "wooden toys"),
    "pets": ("dog food", "grooming"), "automotive": ("car rentals", "tire service"),
}  # fmt: skip
AD_TEMPLATES = (
    "{Adj}-owned and proud! {Product} 20% off this weekend only.",
    "New in: {product} for {people}. Free shipping on orders over $50 \U0001f389",
    "{People} save 15% on {product} all month - show this ad at checkout.",
    "Celebrate {adj} heritage month with our {product} collection.",
    "Our {product} were designed with {people} in mind. Shop now!",
    "Proudly serving {people} since 1998: {product}, fair prices, friendly staff.",
    "Grand opening! {Adj} family business - {product} and more. Come say hi :)",
    "Scholarship alert: {adj} students can win a year of {product}. Apply by May 1.",
    "Looking for {product}? Ask about our offers for {people}.",
    "Voted best {product} in town by {people}. Book today!",
    "Free {product} workshop for {people} - Saturday 10am, all welcome.",
    "Limited edition {product} by {adj} designers. Only 100 made!",
    "{Product} you'll love, recommended by {people} everywhere. Order online.",
    "Join {people} at our {product} open day - snacks and music included.",
    "Hiring! Warehouse and store roles, {adj} applicants encouraged. {Product} discount for staff.",
    "Bundle deal: 2 for 1 on {product}. {People} get an extra gift.",
    "Accessible store, multilingual staff, {product} for {people}. Visit us today.",
    "Sign up for our newsletter: {adj} recipes, stories and {product} deals every week.",
)


# Ordinary ad copy whose words look violent, derogatory or like a group out of context: kind ->
# lines. None is offensive or hateful; profane slang ("damn good coffee") is left out, since
# the policy counts profanity as offensive.
IDIOM_ADS = {
    "violent_idiom": (
        "Killer prices on 4K TVs - this weekend only.",
        "Our burgers are the bomb. Try one today!",
        "Drop-dead gorgeous dresses for prom night.",
        "Shoot for the stars with our beginner telescopes.",
        "Crush your workout goals with our protein shakes.",
        "This cheesecake is to die for.",
        "Beat the heat with 20% off air conditioners.",
        "Blow the competition away with our marketing package.",
        "Kill your cravings with our low-sugar snacks.",
        "Dominate the court in our new basketball shoes.",
        "Shoot your shot: the dating app for over-50s.",
        "Prices so low it's criminal.",
        "Slay all day in our new lipstick range.",
        "Savage discounts on gaming chairs!",
        "Knock 'em dead at your interview in a tailored suit.",
    ),
    "pests_and_cleaning": (
        "Pest control that works: we exterminate rats, cockroaches and bedbugs.",
        "Kills 99.9% of germs on contact.",
        "Get rid of weeds for good with our garden spray.",
        "Vermin-proof storage boxes for your garage.",
        "Trash bags, 100-pack, heavy duty.",
        "Mouse traps that actually work - humane options too.",
        "Wipe out mould and mildew in minutes.",
        "Flea and tick treatment for dogs and cats, vet approved.",
        "Declutter your home: we haul away junk and garbage the same day.",
        "Termite inspection, free this month.",
    ),
    "group_word_homonym": (
        "Black Friday deals: up to 70% off everything!",
        "White sale: all bed linens 40% off this week.",
        "Oriental rugs, hand-knotted, free delivery.",
        "Dumb phones for kids: calls and texts only.",
        "Fat-free yogurt, now in mango.",
        "Our monster truck rally comes to town Saturday.",
        "Nuts about nuts? Our mixed nut tin is 2 for $10.",
        "Animal shelter adoption day: meet your new best friend.",
        "Black-tie event tickets on sale now.",
        "Free-range chickens, happy hens, fresh eggs.",
        "Queer Eye fans: tickets for the live show on sale now.",
        "Mad deals on mattresses, crazy low prices.",
        "Insanely fast Wi-Fi for the whole house.",
        "Brown rice, white rice, wild rice: 3 for $5.",
        "Free HIV testing, confidential, walk-ins welcome.",
    ),
    "deserve": (
        "Every child deserves a good education - enrol today.",
        "You deserve a vacation! Book now and save 30%.",
        "Treat yourself, you deserve it.",
        "Your pet deserves the best food.",
        "Great coffee is what Monday mornings deserve.",
    ),
}


def idiom_ads() -> list[dict[str, Any]]:
    """Ordinary ad copy that only looks offensive out of context (:data:`IDIOM_ADS`), normal."""
    return [
        {
            "id": f"idiom-{kind}-{i}",
            "text": text,
            "labels": {"hate_speech": 0, "offensive_language": 0},
            "meta": {"class": "normal", "kind": kind},
        }
        for kind, lines in IDIOM_ADS.items()
        for i, text in enumerate(lines)
    ]


def benign_ads() -> list[dict[str, Any]]:
    """The benign ad-copy set: each group paired with every category (see the module docstring)."""
    rng = random.Random(13)
    out = []
    for g, (group, (adj, people)) in enumerate(AD_GROUPS.items()):
        for c, (category, products) in enumerate(PRODUCTS.items()):
            if (g + c) % 22 >= 18:  # 18 of the 22 categories per group, rotating
                continue
            template = AD_TEMPLATES[(g * 7 + c) % len(AD_TEMPLATES)]
            product = rng.choice(products)
            fields = {"adj": adj, "people": people, "product": product}
            fields |= {k.capitalize(): v[:1].upper() + v[1:] for k, v in fields.items()}
            out.append(
                {
                    "id": f"benign-{group}-{category.replace(' ', '_')}",
                    "text": template.format(**fields),
                    "labels": {"hate_speech": 0, "offensive_language": 0},
                    "meta": {"class": "normal", "group": group, "category": category},
                }
            )
    return out


# Behavioural targets: (group, noun as a sentence names them).
TARGETS = (
    ("black", "black people"), ("muslim", "muslims"), ("jewish", "jews"), ("gay", "gay people"),
    ("trans", "trans women"), ("women", "women"), ("disabled", "disabled people"),
    ("immigrant", "immigrants"), ("asian", "asian people"), ("latino", "latinos"),
)  # fmt: skip
FUNCTIONALITIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "identity_neutral": ("normal", (
        "There are a lot of {t} living in this part of town.",
        "My new coworkers are {t}.",
        "The report looks at how many {t} work in tech.",
        "I met two {t} at the conference yesterday.",
        "Are there any {t} in your book club?",
    )),
    "identity_positive": ("normal", (
        "I absolutely love {t}.",
        "{T} are brilliant and so much fun to be around.",
        "We are lucky to have {t} in our team.",
        "{T} have made this city a better place.",
        "Honestly, {t} are some of the kindest people I know.",
    )),
    "negated_hate": ("normal", (
        "I don't hate {t}.",
        "{T} are not disgusting at all.",
        "I would never say that {t} are trash.",
        "No, {t} aren't a plague on society.",
        "It's false that {t} are less intelligent.",
    )),
    "counter_speech": ("normal", (
        "If you think {t} are scum, you need to take a hard look at yourself.",
        "Posts claiming {t} should be wiped out are vile and should be reported.",
        "Stop calling {t} parasites, it's cruel and untrue.",
        "Anyone saying {t} don't deserve rights is a bigot.",
        "I'm sick of seeing people attack {t} online.",
    )),
    "derogation": ("hate", (
        "{T} are repulsive.",
        "I can't stand {t}, they are a plague.",
        "{T} are all worthless scum.",
        "Everyone knows {t} are filthy and stupid.",
        "{T} are pathetic lowlifes.",
    )),
    "dehumanisation": ("hate", (
        "{T} are nothing but animals.",
        "{T} are cockroaches infesting our streets.",
        "{T} are a cancer that must be cut out.",
        "{T} are rats, plain and simple.",
        "To me {t} are just garbage.",
    )),
    "threat": ("hate", (
        "I'm going to kill all the {t} I see.",
        "{T} should all be shot.",
        "Someone should burn the houses of {t}.",
        "We will hunt down {t} one by one.",
        "Hang every one of the {t}.",
    )),
    "normative_threat": ("hate", (
        "{T} should be executed.",
        "It should be legal to shoot {t}.",
        "{T} ought to be locked up and tortured.",
        "The best thing for {t} would be a bullet.",
        "{T} need to be exterminated.",
    )),
    "question_hate": ("hate", (
        "Why are {t} such a disgrace?",
        "Aren't {t} just a pack of thieves?",
        "Why do {t} have to be so stupid and useless?",
        "Isn't it obvious that {t} are a cancer on society?",
        "Who even wants {t} around, those filthy animals?",
    )),
    "opinion_hate": ("hate", (
        "In my opinion, {t} are a plague.",
        "I believe {t} are inferior to the rest of us.",
        "If you ask me, {t} are all scum.",
        "My view is that {t} are subhuman.",
        "As far as I'm concerned, {t} are worthless.",
    )),
    "pronoun_hate": ("hate", (
        "I met some {t} today. They are disgusting animals.",
        "Don't tell me about {t}. I hate them.",
        "{T}? They are the worst kind of vermin.",
        "We let {t} move here and now they ruin everything, the filthy parasites.",
        "You know what I think of {t}: they should all die.",
    )),
    "profane_hate": ("hate", (
        "Fucking {t} ruin everything.",
        "{T} are fucking scum.",
        "{T} can go to hell, every damn one of them.",
        "{T} are shit and always will be.",
        "Screw {t}, those damn animals.",
    )),
    "deserve_positive": ("normal", (
        "{T} deserve the same rights as everyone.",
        "{T} deserve respect.",
        "{T} deserve to feel safe in their homes.",
        "Every one of the {t} deserves a fair hearing.",
        "{T} deserve better than the way they were treated.",
    )),
    "quoted_hate_denounced": ("normal", (
        '"{T} are scum" is never OK to say.',
        '"{T} should die" is the kind of thing nobody should ever say.',
        'He wrote "I hate {t}" and got banned, as he should.',
        'If you tweet "{t} are animals" you are the problem.',
        '"All {t} are criminals" is a lie.',
    )),
    "hate_referenced_denounced": ("normal", (
        "Your post about {t} is disgusting and hateful.",
        "That speech attacking {t} was shameful.",
        "The comments on that video about {t} are vile.",
        "I reported the account that keeps insulting {t}.",
        "Statements like yours about {t} are why we need moderation.",
    )),
    # Written as a probe of the previous default (2026-12-04), before the augmentation's
    # stereotypes, denied praise and follow-up sentences, which use other wording.
    "implicit_derogation": ("hate", (
        "{T} bring nothing but crime to our neighbourhoods.",
        "You can always tell when {t} move in, the whole street goes downhill.",
        "{T} only know how to steal and sell drugs.",
        "{T} secretly control the banks and the media.",
        "Hiring {t} is a waste of money.",
    )),
    "negated_positive": ("hate", (
        "{T} are never any good.",
        "I have never met any {t} worth knowing.",
        "{T} will never be as smart as the rest of us.",
        "There is nothing good about {t}.",
        "{T} have never contributed anything to this country.",
    )),
    "hate_subsequent_sentence": ("hate", (
        "I saw a group of {t} at the station. Honestly, they are a plague on this country.",
        "Some {t} moved in down the road. They should all be sent back where they came from.",
        "Have you met the {t} in accounting? Stupid creatures, all of them.",
        "There's a bar for {t} opening downtown. Those people disgust me.",
        "More {t} arrived last week. Vermin, every one of them.",
    )),
}  # fmt: skip
# Hateful sentences with one of HateCheck's spelling changes: a missing word boundary,
# leetspeak, two letters swapped.
SPELLING_KINDS: dict[str, tuple[str, ...]] = {
    "spelling_boundary": (
        "Ihate {t} so much.", "{T} are disgustinganimals.", "Kill all{t}.", "{T} arevermin.",
        "{T} are worthlessscum.",
    ),
    "spelling_leet": (
        "{T} are tr4sh.", "K1ll all {t}.", "{T} are d1rty th1eves.", "I h4te {t} with a p4ssion.",
        "{T} are vermin, 100% p4r4sites.",
    ),
    "spelling_swap": (
        "I htae {t}.", "{T} are disugsting.", "{T} are wrothless scum.",
        "Kill all {t}, tehy are vermin.", "{T} are aniamls.",
    ),
}  # fmt: skip
UNPROTECTED_ABUSE = (  # insults at people who are not a protected group: offensive, not hate
    "Lawyers are crooks.",
    "Politicians are liars and thieves.",
    "Bankers are greedy bastards.",
    "Landlords are bloodsuckers.",
    "Referees are blind clowns, every single one.",
    "Telemarketers are the lowest form of life.",
    "Critics are talentless hacks.",
    "Dentists are sadists who love your pain.",
    "Influencers are brainless attention whores.",
    "Car dealers are lying sleazebags.",
)
INDIVIDUAL_ABUSE = (
    "You are a lying piece of shit.",
    "Shut up, you worthless idiot.",
    "My landlord is a greedy asshole.",
    "That referee is a fucking moron.",
    "You're pathetic and everyone knows it, loser.",
    "My brother is such a dumb prick.",
    "Get lost, you ugly cow.",
    "Our manager is a spineless weasel.",
)
WOMEN = (
    "Women are stupid and belong in the kitchen.",
    "All women are sluts who deserve nothing.",
    "Women are too emotional to be trusted with anything important.",
    "Females should shut up and obey their husbands.",
    "A woman's opinion is worthless.",
    "Women are property, nothing more.",
    "Girls are dumb whores, every one of them.",
    "Women should be slapped when they get mouthy.",
)
DISABLED = (
    "Disabled people are useless leeches on society.",
    "Retarded people should be kept away from normal folks.",
    "Cripples are a waste of space.",
    "People with Down syndrome should never have been born.",
    "Autistic freaks shouldn't be allowed in schools.",
    "The mentally ill are dangerous animals that should be caged.",
    "Wheelchair users are pathetic burdens.",
    "Deaf people are too stupid to deserve jobs.",
)
SPELLING = (  # hateful sentences with a misspelt key word
    "{T} are w o r t h l e s s scum.",
    "{T} are f1lthy animals.",
    "I h8 {t} so much.",
    "{T} are disgustng vermin.",
    "Kill all {t}, every lsat one.",
    "{T} are stupdi trash.",
)
SLUR_VARIANTS = (
    "those n1ggers ruin everything",
    "f@ggots like him make me sick",
    "get out of here you k i k e",
    "all r3tards should be locked up",
    "spicks should go back where they came from",
    "that dumb tr@nny needs to disappear",
    "muzzies are all terrorists",
    "c00ns everywhere in this town",
)
SLUR_HOMONYMS = (  # a slur's other, literal sense: normal
    "We bought a bundle of faggots for the bonfire.",
    "The winner of best of breed was a three-year-old bitch from Kent.",
    "Spotted dick with custard is a classic British pudding.",
    "Queer theory is one of the modules on my literature course.",
    "The fag end of summer is the best time for a cheap holiday.",
    "The dam, a champion bitch, whelped eight healthy pups.",
)
OBJECT_ABUSE = (  # complaints about things, not people: normal
    "This printer is useless garbage.",
    "I really can't stand this weather.",
    "That movie was a complete waste of two hours.",
    "My phone is a piece of junk and I hate it.",
    "Cauliflower is disgusting.",
    "This traffic is killing me.",
    "The new update is awful, I hate everything about it.",
    "What a pathetic excuse for a sandwich.",
)
PROFANITY = (
    "Fuck yeah, we won the game!",
    "This traffic is absolute shit.",
    "Holy shit, that concert was amazing.",
    "I'm so fucking tired today.",
    "Damn, that pizza was good as hell.",
    "What the fuck is wrong with my laptop.",
    "This weather is fucking ridiculous.",
    "Shit, I forgot my keys again.",
    "My boss is being a dick about the schedule.",
    "Fucking finally, the weekend is here.",
)


def _behaviour_rows() -> Iterator[tuple[str, str, str, str | None]]:
    for name, (cls, templates) in FUNCTIONALITIES.items():
        for template in templates:
            for group, noun in TARGETS:
                text = template.format(t=noun, T=noun[:1].upper() + noun[1:])
                yield name, cls, text, group
    for text in WOMEN:
        yield "hate_women", "hate", text, "women"
    for text in DISABLED:
        yield "hate_disabled", "hate", text, "disabled"
    for template in SPELLING:
        for group, noun in TARGETS:
            yield (
                "spelling_hate",
                "hate",
                template.format(t=noun, T=noun[:1].upper() + noun[1:]),
                group,
            )
    for name, templates in SPELLING_KINDS.items():
        for template in templates:
            for group, noun in TARGETS:
                text = template.format(t=noun, T=noun[:1].upper() + noun[1:])
                yield name, "hate", text, group
    for text in UNPROTECTED_ABUSE:
        yield "abuse_unprotected", "offensive", text, None
    for text in INDIVIDUAL_ABUSE:
        yield "abuse_individual", "offensive", text, None
    for text in SLUR_VARIANTS:
        yield "spelling_slur", "hate", text, None
    for text in PROFANITY:
        yield "profanity_not_hate", "offensive", text, None
    for text in SLUR_HOMONYMS:
        yield "slur_homonym", "normal", text, None
    for text in OBJECT_ABUSE:
        yield "abuse_objects", "normal", text, None


def behaviour() -> list[dict[str, Any]]:
    """The behavioural set (see the module docstring)."""
    labels = {
        "hate": {"hate_speech": 1, "offensive_language": 1},
        "offensive": {"hate_speech": 0, "offensive_language": 1},
        "normal": {"hate_speech": 0, "offensive_language": 0},
    }
    out = []
    for i, (name, cls, text, group) in enumerate(_behaviour_rows()):
        meta: dict[str, Any] = {"class": cls, "functionality": name}
        if group is not None:
            meta["group"] = group
        out.append(
            {"id": f"behaviour-{i}", "text": text, "labels": dict(labels[cls]), "meta": meta}
        )
    return out


def write_text_sets(out_dir: str | Path) -> dict[str, Path]:
    """Write ``benign_ads.jsonl``, ``idiom_ads.jsonl``, ``behaviour.jsonl`` and
    ``hatecheck.jsonl`` under ``out_dir``."""
    out = Path(out_dir)
    return {
        "benign_ads": write_manifest(benign_ads(), out / "benign_ads.jsonl"),
        "idiom_ads": write_manifest(idiom_ads(), out / "idiom_ads.jsonl"),
        "behaviour": write_manifest(behaviour(), out / "behaviour.jsonl"),
        "hatecheck": write_manifest(hatecheck_ads(), out / "hatecheck.jsonl"),
    }
