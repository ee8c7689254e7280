"""Training augmentation against the known failure modes of a slur-heavy tweet classifier.

General methods, each producing labelled rows (``meta.augment`` names the method):

- ``identity_swap``: counterfactual copies of training rows that name an identity group, the
  group swapped for another (same label: an attack on any group is an attack, a neutral
  mention of any group is neutral), after Dixon et al. (2018) and Garg et al. (2019).
- ``identity_benign``: neutral and positive sentences and ad copy naming a group: normal.
- ``counter_speech``: negated hate and speech against hate: normal.
- ``hate_template``: explicit derogation, dehumanisation and threats against groups,
  women and disabled people included (under-represented in the sources): hate.
- ``spelling``: copies of hateful and offensive rows whose most class-indicative words
  (highest log-odds against normal rows, counted on the training rows themselves) are
  misspelt: inserted spaces, dropped, swapped or doubled letters: same label.
- ``composed``: sentences composed from parts (who, what is said of them, how it is framed),
  so that the model sees the same insult asserted (hate), denied or denounced (normal) and
  misspelt (hate), the same frames carrying praise or plain facts (normal: what makes a
  sentence hateful is what it says of the group, not that it names one), and profanity or
  insults aimed at no group (offensive, as the policy defines it): many combinations of a
  few hundred words rather than a few fixed sentences. The clauses are also framed as a
  question, an opinion ("i think ...") or through a pronoun ("... they are vermin"), hateful
  and benign alike, so that no frame becomes a cue for either class (without them the
  model read "why are ...", "arent ..." and "if you ask me ..." as counter-speech); hate that
  carries a negation word ("not even human") is hate; hate quoted in order to reject it is
  normal; the same insults aimed at people who are no protected group (lawyers, landlords)
  are offensive, not hate; and what a group deserves, said well of it ("X deserve equal
  pay"), is normal, since "deserve" also carries threats ("deserve a bullet"); and the insult
  and threat words in their literal sense ("we exterminate rats", "we haul away garbage"),
  slurs' other senses included (a breeder's bitch, faggots of wood), are normal. Hate without
  an insult word comes in contrast pairs too: a stereotype ("X push drugs on our kids": hate;
  "X create jobs here": normal), what a group is worth to an employer or a town ("never give
  X a job": hate; "give X a job": normal), praise denied to a group ("X are never kind":
  hate; "X are never lazy": normal) and a group named in one sentence and judged in the next
  ("X bought the house across the street they make me sick": hate; "... they make me smile":
  normal).
  Complaints about things, insult words and all ("this laptop is garbage", "i hate this
  weather"), are normal: an insult needs a person. And a harm wished on a group ("X should
  go hungry", "let X suffer": hate) against the same harm that nobody should suffer ("no X
  should go hungry", "dont let X suffer alone": normal), with everyday people (children,
  seniors, patients) as well as groups: the shape of charity and public-service copy, which
  a model that reads "should not" + a harm as hate blocks ("Children should not go hungry"
  scored 0.99 `hate_speech` before these rows).

The templates, word lists and spelling operations here are written apart from the evaluation
sets of :mod:`ensemble.training.textsets` (other sentences, other products); the group names overlap,
as they must.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from encoders.textnorm import social_v1

# (adjective, plural noun) per group.
GROUPS = (
    ("black", "black people"), ("white", "white people"), ("asian", "asians"),
    ("latino", "latinos"), ("hispanic", "hispanics"), ("mexican", "mexicans"),
    ("arab", "arabs"), ("muslim", "muslims"), ("jewish", "jews"), ("christian", "christians"),
    ("hindu", "hindus"), ("sikh", "sikhs"), ("buddhist", "buddhists"), ("gay", "gay men"),
    ("lesbian", "lesbians"), ("bisexual", "bisexual people"), ("transgender", "trans people"),
    ("queer", "queer people"), ("female", "women"), ("male", "men"),
    ("disabled", "disabled people"), ("blind", "blind people"), ("deaf", "deaf people"),
    ("autistic", "autistic people"), ("immigrant", "immigrants"), ("refugee", "refugees"),
    ("african", "africans"), ("chinese", "chinese people"), ("indian", "indians"),
    ("native american", "native americans"), ("elderly", "elderly people"),
    ("nigerian", "nigerians"), ("korean", "koreans"), ("polish", "poles"),
    ("irish", "irish people"), ("pakistani", "pakistanis"), ("somali", "somalis"),
)  # fmt: skip
_BENIGN = (
    "my {adj} neighbour helped me fix the fence today",
    "{noun} have every right to be here",
    "so proud of the {adj} students who graduated this year",
    "i love how welcoming {noun} were when we visited",
    "we are hiring and welcome applications from {noun}",
    "{adj} owned bakery opening downtown this weekend",
    "a documentary about {adj} history airs tonight",
    "my best friend is {adj} and she is the kindest person i know",
    "{noun} contribute so much to our community",
    "new cookbook celebrating {adj} family recipes now available",
    "the festival showcased {adj} musicians and artists",
    "support group for {noun} meets every thursday evening",
    "shop our collection designed with {noun} in mind",
    "free consultation for {adj} entrepreneurs starting a business",
    "our clinic offers care tailored to {noun}",
    "being {adj} is nothing to be ashamed of",
    "{noun} are people just like everyone else",
    "join our {adj} book club for coffee and conversation",
    "discount on travel packages for {adj} families this summer",
    "the panel included several {adj} scientists",
)
_COUNTER = (
    "no {noun} deserve to be treated like that",
    "saying {noun} are animals is disgusting and wrong",
    "i will never accept people calling {noun} vermin",
    "hating {noun} makes no sense at all",
    "stop spreading lies that {noun} are criminals",
    "it is not true that {noun} are stupid",
    "anyone who wants to hurt {noun} should be ashamed",
    "{noun} are not a threat to anyone",
    "i dont think {noun} should be kicked out of the country",
    "there is nothing wrong with being {adj}",
    "people who say {noun} are inferior are just bigots",
    "violence against {noun} has to stop",
)
_HATE = (
    "{noun} are subhuman filth",
    "i despise {noun} they are worthless",
    "{noun} are vermin and should be wiped out",
    "all {noun} should be deported or worse",
    "{noun} are a disease on this country",
    "never trust {noun} they are all liars and thieves",
    "{noun} should not be allowed to breed",
    "i want every one of the {noun} dead",
    "{noun} are disgusting animals",
    "we need to get rid of {noun} for good",
    "the world would be better without {noun}",
    "{noun} are too stupid to be treated as equals",
)
_HATE_WOMEN = (
    "women are too dumb to vote and should stay in the kitchen",
    "females are worthless unless they obey a man",
    "women deserve to be beaten when they talk back",
    "every woman is a lying manipulative whore",
    "girls like her should be put in their place by force",
    "women are inferior and should have no rights",
)
_HATE_DISABLED = (
    "disabled people are a burden and should be put down",
    "retards like him should not be allowed in public",
    "people in wheelchairs are useless parasites",
    "autistic kids are defective and should be locked away",
    "cripples should not be allowed to have children",
    "mentally ill people are subhuman freaks",
)
_SPELLING_OPS = ("space", "drop", "swap", "double", "spread")
# The parts of the ``composed`` sentences.
_WHO = ("{noun}", "all {noun}", "most {noun}", "these {noun}", "those {noun}", "the {noun}")
_INSULT_ADJ = (
    "vile", "worthless", "disgusting", "dirty", "inferior", "subhuman", "evil", "useless",
    "stupid", "lazy", "ugly", "repugnant", "degenerate", "revolting", "brainless", "sick",
)  # fmt: skip
_INSULT_NOUN = (
    "animals", "vermin", "rats", "cockroaches", "pigs", "apes", "parasites", "a disease",
    "a virus", "a plague", "an infestation", "savages", "monsters", "insects", "a cancer",
    "filth", "garbage", "dogs", "trash", "scum", "leeches", "lowlifes", "maggots", "idiots",
)  # fmt: skip
_ASSERT = (
    "{who} are {adj}", "{who} are {noun2}", "{who} are nothing more than {noun2}",
    "{who} are basically {noun2}", "face it {who} are {noun2}", "{who} are {adj} {noun2}",
    "i hate {noun} because they are {adj}", "{who} are {noun2} and always will be",
    "{who} are so {adj} it makes me sick", "honestly {who} are {adj}",
    "i cant stand {noun} they are {noun2}", "{who} are the most {adj} people alive",
    "everyone knows {who} are {noun2}", "{who} is another word for {noun2}",
)  # fmt: skip
_THREAT = (
    "someone needs to shoot {who}", "lets exterminate {who}", "i will stab the next one of the {noun} i see",
    "we should gas {who}", "time to lynch {who}", "round up {who} and kill them",
    "i hope someone murders {who}", "burn down the homes of {noun}", "drown {who} in the river",
    "beat every one of {noun} until they stop moving", "{who} deserve a bullet",
    "wipe {who} off the map", "i would happily kill {who}", "{who} should hang",
)  # fmt: skip
_DENY = (
    "{noun} are not {adj}", "{noun} are not {noun2}", "i do not think {noun} are {adj}",
    "nobody should call {noun} {noun2}", "calling {noun} {noun2} is hateful",
    "people who say {noun} are {noun2} are ignorant", "the idea that {noun} are {adj} is a myth",
    "i report every post that says {noun} are {noun2}",
    "why do people keep saying {noun} are {adj} its wrong",
    "seeing {noun} called {noun2} online breaks my heart",
    "it is never ok to say {noun} should die", "i am tired of bigots calling {noun} {noun2}",
    "{noun} are human beings not {noun2}", "whoever said {noun} are {adj} should apologise",
    "i used to think {noun} were {adj} and i was wrong", "{noun} are no more {adj} than anyone",
    "threatening {noun} is a crime and should be punished", "please stop saying {noun} are {noun2}",
    "that account keeps posting that {noun} are {noun2} report it",
    "no {adj2} person is {adj} for being {adj2}",
)  # fmt: skip
_PRAISE_ADJ = (
    "kind", "brilliant", "hardworking", "generous", "talented", "wonderful", "smart", "honest",
    "welcoming", "funny", "brave", "inspiring", "thoughtful", "creative", "caring", "amazing",
)  # fmt: skip
_PRAISE_NOUN = (
    "heroes", "great neighbours", "good friends", "the heart of this town", "a blessing",
    "role models", "gifted artists", "hard workers", "lovely people", "true professionals",
)  # fmt: skip
_PRAISE = (
    "{who} are {padj}", "{who} are nothing but {pnoun}", "i love {noun} because they are {padj}",
    "honestly {who} are {padj}", "everyone knows {who} are {pnoun}", "i really admire {noun}",
    "{who} are so {padj} it makes me smile", "i adore {noun} they are {pnoun}",
    "to me {noun} are simply {pnoun}", "{who} are the most {padj} people i know",
    "we are so lucky to have {noun} around", "i have always loved {noun}",
)  # fmt: skip
_FACT = (
    "{noun} make up a large part of the population here",
    "most of my coworkers are {noun}", "the survey counted how many {noun} live in the city",
    "a new study about {noun} came out today", "several {noun} spoke at the meeting",
    "the neighbourhood has many {noun} and many students", "is it true that {noun} {verb}",
    "my cousin married one of the {noun} from her class", "the census asks whether you are {adj2}",
    "our team includes {noun} from three countries", "how many {noun} work in this industry",
    "we interviewed {noun} about their first jobs",
)  # fmt: skip
_FACT_VERBS = ("celebrate new year in spring", "run most shops on this street", "live nearby")
# The same clause framed as a question, an opinion or through a pronoun: what is said of a
# group decides the class, not the frame (a frame must not become a cue for either class).
_QUESTION_HATE = (
    "why are {who} so {adj}", "arent {who} just {noun2}", "dont you think {who} are {noun2}",
    "who else thinks {who} are {adj}", "how are {noun} allowed to be this {adj}",
    "can we finally admit that {who} are {noun2}", "isnt it time we got rid of {noun}",
    "why do we let {noun} live here they are {noun2}", "is there anything more {adj} than {noun}",
    "wouldnt the world be better without {noun}",
)  # fmt: skip
_QUESTION_PRAISE = (
    "why are {who} so {padj}", "arent {who} just {pnoun}", "dont you think {who} are {padj}",
    "who else thinks {who} are {padj}", "how are {noun} always this {padj}",
    "can we finally admit that {who} are {pnoun}", "isnt it great to have {noun} here",
    "is there anyone more {padj} than {noun}", "wouldnt this town be poorer without {noun}",
)  # fmt: skip
OPINION_FRAMES = (
    "i think", "i really believe", "imo", "in my honest opinion", "personally i would say",
    "lets be real", "call me what you want but", "its just a fact that", "i have always felt",
    "my whole family agrees",
)  # fmt: skip
_PRONOUN_HATE = (
    "i met {noun} at the bar last night they are {adj} {noun2}",
    "{noun} moved in next door and they are {noun2}", "dont talk to me about {noun} they are {adj}",
    "i know {noun} and trust me they are {noun2}", "{noun} again ugh they are so {adj}",
    "keep {noun} away from me i hate them", "i hate {noun}", "i fucking hate {noun}",
    "i hate {noun} more than anything", "{noun} i cant stand them",
)  # fmt: skip
_PRONOUN_PRAISE = (
    "i met {noun} at the bar last night they are {pnoun}",
    "{noun} moved in next door and they are {padj}", "dont talk to me about {noun} unless its praise",
    "i know {noun} and trust me they are {pnoun}", "{noun} again yay they are so {padj}",
    "keep {noun} close they are {pnoun}", "i love {noun}", "i fucking love {noun}",
    "i love {noun} more than anything", "{noun} i cant get enough of them",
)  # fmt: skip
# Hate that carries a negation word: a negation must not read as counter-speech on its own.
_NEGATED_HATE = (
    "{who} are not even human", "{who} are no better than {noun2}",
    "{who} will never be anything but {noun2}", "{who} dont deserve to live",
    "i dont see {noun} as people they are {noun2}", "{who} can never be trusted",
    "nothing good ever came from {noun}", "i wont rest until {who} are gone",
    "{who} should not be allowed near our kids", "no {adj2} person deserves rights",
)  # fmt: skip
# Hate quoted or reported in order to reject it: normal.
_QUOTED = (
    "{who} are {noun2} that is what bigots believe and it is false",
    "someone sprayed {who} are {noun2} on the wall and i painted over it",
    "my uncle says {who} are {adj} and i told him he is wrong",
    "quote {who} are {noun2} unquote is not an argument",
    "{who} are {noun2} is exactly the kind of hate we fight",
    "the banner read {noun} should die and the police took it down",
    "i cant believe someone still writes {who} are {adj} in 2024",
    "the troll replied {who} are {noun2} and got suspended",
)  # fmt: skip
# What a group deserves, good (normal): "deserve" also carries threats ("deserve a bullet")
# and negated hate ("dont deserve to live"), and must not become a cue for hate on its own.
_DESERVE = (
    "{who} deserve dignity", "{noun} deserve equal pay", "all {noun} deserve a safe home",
    "{noun} deserve to be heard", "{noun} deserve our support", "{noun} deserve better healthcare",
    "{who} deserve a fair chance at every job", "{adj2} kids deserve great teachers",
    "{noun} deserve to live without fear", "{noun} deserve the same protection under the law",
    "every {adj2} family deserves a warm welcome", "{noun} deserve so much better than this",
    "you deserve a day off", "every student deserves a good teacher",
    "our customers deserve fast delivery", "your family deserves a safe car",
)  # fmt: skip
# The insult and threat vocabulary in its literal sense, as ad copy and everyday posts use it
# (pests, rubbish, animals, illness): normal. A word is not an attack without a target.
_LITERAL = (
    "we {verb} {pests} in your home fast", "our spray {verb2} {pests} on contact",
    "{pests} in the attic call us today for same day removal",
    "professional {pests} control for homes and restaurants",
    "how to keep {pests} out of your kitchen", "we haul away {junk} the same day",
    "put your {junk} out by 7am on collection day", "the zoo welcomes two baby {animals}",
    "meet the {animals} at the petting farm this weekend", "documentary about wild {animals} tonight",
    "new treatment trial against {illness} starts in march", "fundraiser for {illness} research this saturday",
    "free screening for {illness} at the community clinic", "{verb} weeds for good with our garden kit",
)  # fmt: skip
# A slur's other, literal sense (dog breeding, butchery, firewood, cigarettes, dams, pudding,
# hunting dogs): normal.
_HOMONYM = (
    "our {breed} bitch had a litter of six puppies", "the judges awarded best bitch to a young {breed}",
    "{breed} bitch for sale kc registered and vet checked", "the bitch and dog classes are judged after lunch",
    "pick up a tray of faggots from the butcher", "faggots and peas with gravy on the pub menu",
    "gather faggots of dry wood for the stove", "a faggot of sticks tied with twine",
    "sea dyke repairs close the coastal road", "the dyke held back the spring floods",
    "the fag end of the season sale", "he went outside for a fag and a coffee",
    "treat the kids to jam roly poly or spotted dick", "coon hounds are bred to track raccoons",
    "the {breed} stud and his bitch both won rosettes",
)  # fmt: skip
_BREEDS = ("labrador", "collie", "spaniel", "greyhound", "poodle", "beagle", "terrier")
_PESTS = ("rats", "mice", "cockroaches", "termites", "bedbugs", "wasps", "fleas", "germs", "vermin",
          "bacteria", "mould", "insects", "parasites", "maggots", "pests")  # fmt: skip
_PEST_VERBS = ("exterminate", "get rid of", "remove", "trap", "kill", "eliminate", "wipe out")
_PEST_VERBS2 = ("kills", "destroys", "eliminates", "wipes out")
_JUNK = ("garbage", "trash", "junk", "old furniture", "rubble", "scrap metal", "filth and grime")
_ANIMALS = ("apes", "pigs", "rats", "dogs", "monkeys", "snakes", "goats", "savannah animals")
_ILLNESS = ("cancer", "the virus", "the flu", "the disease", "a plague of locusts", "infection")
# Stereotypes: a group said to do, cause or be fit for something bad is demeaned without a
# single insult word (implicit derogation): hate; the same frames saying something good: normal.
_STEREOTYPE = (
    "{who} {bad}", "{who} all {bad}", "everyone knows {who} {bad}", "typical {noun} they {bad}",
    "the problem with {noun} is that they {bad}", "{who} {bad} and we all pay for it",
    "wherever {noun} go they {bad}", "it is in their nature {noun} {bad}",
    "ask anyone around here {who} {bad}", "since {noun} came to this town they {bad}",
    "my dad always said {who} {bad}", "funny how {noun} always {bad}", "statistically {who} {bad}",
)  # fmt: skip
_BAD_DEEDS = (
    "are criminals at heart", "steal whatever is not nailed down", "undercut honest workers",
    "turn every street they live on into a slum", "push drugs on our kids", "leech off the state",
    "cannot be trusted with money", "run the world from the shadows", "carry disease",
    "prey on children", "drain our hospitals dry", "breed like rabbits", "are terrorists in waiting",
    "lie as easily as they breathe", "are only fit to clean toilets", "cannot do anything without help",
    "are too emotional to run anything", "should be kept barefoot and pregnant", "drag this country down",
    "are why everything is falling apart", "cheat on their taxes",
    "are a burden on every taxpayer", "ruin every school they go to", "make a neighbourhood unsafe",
    "lower the price of every house nearby", "live on benefits their whole lives",
    "pull the strings behind every government", "own every newspaper and bank", "sell drugs on every corner",
    "cannot hold down a job", "are bad at everything they try", "are not clever enough for university",
    "do not belong in an office", "belong in the kitchen", "should stay in the closet",
    "are not fit to raise children", "make terrible employees", "are a drain on the economy",
    "should not be allowed to vote", "spread disease wherever they settle", "commit most of the crime here",
    "rob the old and the weak", "only care about money", "are ruining this country",
)  # fmt: skip
# What a group is worth to an employer, a landlord, a town, said without an insult word:
# worthless or to be kept out is hate; worth having is normal.
_WORTHLESS = (
    "employing {who} is throwing money away", "never give {noun} a job", "no company should hire {noun}",
    "i would not trust {noun} with my business", "do not rent your flat to {noun}",
    "keep {noun} away from our schools", "{who} add nothing to this country",
    "i would rather close my shop than serve {noun}", "paying {noun} a wage is charity",
    "this town was better before the {noun} arrived",
)  # fmt: skip
_WORTHWHILE = (
    "employing {who} is money well spent", "give {noun} a job", "every company should hire {noun}",
    "i would trust {noun} with my business", "rent your flat to {noun}",
    "welcome {noun} to our schools", "{who} add so much to this country",
    "my shop is proud to serve {noun}", "paying {noun} a fair wage is good business",
    "this town got better after the {noun} arrived",
)  # fmt: skip
_GOOD_DEEDS = (
    "are great entrepreneurs", "bring great food to every town", "create jobs here",
    "work harder than anyone", "are great with money", "make every street they live on better",
    "are wonderful with children", "help everyone around them", "run half the shops on this street",
    "are great leaders", "raise money for the food bank", "pay more than their share of taxes",
    "belong in every boardroom", "keep this town going", "are why this city is thriving",
)  # fmt: skip
# Praise negated or denied to a whole group is hate; an insult negated or denied is normal:
# the negation decides nothing, what is denied of the group does.
_DENIED_PRAISE = (
    "{who} are never {padj}", "i have yet to meet a {padj} {adj2} person", "{who} will never be {pnoun}",
    "nobody has ever called {noun} {padj}", "not one of the {noun} i know is {padj}",
    "{who} cant do a single thing right", "{who} will never measure up to us",
    "no {adj2} person can be {padj}", "{who} have never given this town anything",
    "{who} are not even worth feeding", "you will never find {padj} {noun}",
)  # fmt: skip
_DENIED_INSULT = (
    "{who} are never {adj}", "i have yet to meet a {adj} {adj2} person", "{who} will never be {noun2}",
    "nobody should ever call {noun} {adj}", "not one of the {noun} i know is {adj}",
    "{who} do so many things right", "{who} measure up to anyone", "no {adj2} person is {noun2}",
    "{who} have given this town so much", "{who} are worth every penny",
    "you will never find {noun} who are {adj}",
)  # fmt: skip
# A harm wished on people (hate when they are a group) against the same harm kept from them
# (normal, whoever they are): the negation decides nothing, what is wished on them does.
_HARMS = (
    "go hungry", "suffer alone", "sleep in the cold", "live in fear", "be left behind",
    "die", "be beaten", "be attacked in the street", "lose their homes", "be thrown out",
    "be bullied at school", "be turned away from hospitals", "be locked up", "starve",
    "be hunted down", "freeze to death this winter", "be treated like dirt",
)  # fmt: skip
# Everyday people, (plural, one of them).
_PEOPLE = (
    ("children", "child"), ("kids", "kid"), ("seniors", "senior"), ("older people", "older person"),
    ("families", "family"), ("veterans", "veteran"), ("students", "student"),
    ("patients", "patient"), ("babies", "baby"), ("mothers", "mother"), ("workers", "worker"),
    ("pets", "pet"), ("neighbours", "neighbour"), ("nurses", "nurse"), ("teenagers", "teenager"),
)  # fmt: skip
_HARM_WISHED = (
    "{who} should {harm}", "let {noun} {harm}", "i would love to see {noun} {harm}",
    "{who} deserve to {harm}", "make {noun} {harm}", "i want to see {noun} {harm}",
    "{who} must {harm}", "it is time to make {noun} {harm}", "{who} should be made to {harm}",
    "leave {noun} to {harm}",
)  # fmt: skip
_HARM_KEPT = (
    "no {one} should {harm}", "{who} should not {harm}", "dont let {noun} {harm}",
    "{who} should never have to {harm}", "nobody should {harm}", "we will not let {noun} {harm}",
    "together we can make sure no {one} has to {harm}", "help us stop {noun} having to {harm}",
    "no {one} has to {harm} on our watch", "never leave {noun} to {harm}", "{who} must not {harm}",
    "no one deserves to {harm}", "donate today so that no {one} has to {harm}",
    "it is wrong to let {noun} {harm}", "{who} shouldnt have to {harm}",
)  # fmt: skip
# A group named in one sentence, judged in the next (the normaliser drops the full stop).
_MENTION = (
    "{noun} opened a shop on my road", "{noun} bought the house across the street",
    "our new manager is {adj2}", "the {noun} from the shelter came to the meeting",
    "half the new hires are {noun}", "my sister brought her {adj2} friends over",
    "a bus full of {noun} just pulled up", "the school hired {adj2} teachers",
)  # fmt: skip
_JUDGED_BAD = (
    "people like that turn my stomach", "{noun2} the whole lot", "{adj} the lot of them",
    "ship them out", "i want them gone", "they make me sick", "they are all {adj}",
    "we dont want their kind here", "nothing but {noun2}",
)  # fmt: skip
_JUDGED_GOOD = (
    "people like that make my day", "{pnoun} the whole lot", "{padj} the lot of them",
    "i hope they stay for good", "i want more of them", "they make me smile",
    "they are all {padj}", "we want their kind here", "nothing but {pnoun}",
)  # fmt: skip
# People who are not a protected group: insulting them is offensive, not hate.
UNPROTECTED = (
    "lawyers", "politicians", "bankers", "landlords", "referees", "critics", "tourists",
    "cyclists", "journalists", "influencers", "telemarketers", "billionaires", "celebrities",
    "gamers", "realtors", "accountants", "car salesmen", "hipsters", "bureaucrats", "lobbyists",
    "coworkers", "neighbours", "football fans", "parking wardens", "hedge fund managers",
)  # fmt: skip
_PROFANE_START = ("fuck", "shit", "damn", "holy shit", "what the fuck", "fucking hell", "goddamn")
_EVERYDAY = (
    "i missed the train again", "the wifi is down", "my coffee went cold", "the game went to "
    "overtime", "my car will not start", "this queue is endless", "i overslept", "it is raining "
    "again", "the printer jammed", "we lost by one point", "the oven burnt the cake",
    "my phone died", "this update broke everything", "the bus is late",
)  # fmt: skip
_PROFANE_INLINE = (
    "this {thing} is fucking {quality}", "the {thing} is absolute shit today",
    "that {thing} was good as fuck", "this damn {thing} never works", "the {thing} is a shitshow",
    "best {thing} ever no bullshit", "this {thing} sucks ass", "my {thing} is a piece of shit",
)  # fmt: skip
_THINGS = ("traffic", "weather", "movie", "laptop", "exam", "pizza", "concert", "meeting",
           "song", "match", "game", "week", "flight", "homework")  # fmt: skip
_QUALITIES = ("amazing", "boring", "insane", "annoying", "great", "slow", "loud")
# Complaints about things, insult words included, no profanity: normal (an insult needs a
# person; "i hate this laptop" is no more hate than "i love this laptop").
_COMPLAINT = (
    "this {thing} is {bad}", "i cant believe how {bad} this {thing} is", "worst {thing} ever so {bad}",
    "honestly the {thing} today was {bad}", "i hate this {thing}", "i cant stand the {thing} anymore",
    "the {thing} is {bad} and i want my money back", "that {thing} was {bad} never again",
)  # fmt: skip
_BAD_THINGS = ("useless", "garbage", "trash", "a joke", "a waste of money", "pathetic", "awful",
               "terrible", "the worst", "rubbish", "a disaster", "junk", "disgusting")  # fmt: skip
_PERSONAL_INSULT = (
    "shut up you {insult}", "my ex is such a {insult}", "you are a complete {insult}",
    "that guy at work is a total {insult}", "stop being a {insult}", "what a {insult} move",
    "my neighbour is a lazy {insult}", "the referee was a blind {insult}",
)  # fmt: skip
_INSULTS = ("asshole", "idiot", "dumbass", "jerk", "bitch", "dick", "moron", "prick", "loser")


def _mentions(text: str, phrase: str) -> bool:
    return re.search(rf"\b{re.escape(phrase)}\b", text) is not None


def _swap_identity(ads: Sequence[Mapping[str, Any]], rng: random.Random, limit: int) -> list[dict]:
    words = {noun.split()[0]: noun for _, noun in GROUPS if " " not in noun}
    words.update({adj: adj for adj, _ in GROUPS if " " not in adj})
    plural = [noun for _, noun in GROUPS if " " not in noun]
    adjectives = [adj for adj, _ in GROUPS if " " not in adj]
    out = []
    for ad in rng.sample(list(ads), len(ads)):
        text = social_v1(ad["text"])
        tokens = text.split()
        hits = [i for i, t in enumerate(tokens) if t in words]
        if not hits:
            continue
        i = rng.choice(hits)
        pool = plural if tokens[i] in plural else adjectives
        tokens[i] = rng.choice([w for w in pool if w != tokens[i]])
        out.append(_row(f"{ad['id']}-swap", " ".join(tokens), ad["meta"]["class"], "identity_swap"))
        if len(out) >= limit:
            break
    return out


def _indicative_words(
    ads: Sequence[Mapping[str, Any]], top: int = 80, least: int = 20
) -> list[str]:
    """Words with the highest smoothed log-odds in hateful/offensive rows against normal rows."""
    bad: Counter[str] = Counter()
    good: Counter[str] = Counter()
    for ad in ads:
        words = set(social_v1(ad["text"]).split())
        (good if ad["meta"]["class"] == "normal" else bad).update(words)
    nb, ng = sum(bad.values()), sum(good.values())
    odds = {
        w: math.log((bad[w] + 1) / nb) - math.log((good[w] + 1) / ng)
        for w in bad
        if bad[w] >= least and len(w) >= 4 and w.isalpha()
    }
    return sorted(odds, key=odds.__getitem__, reverse=True)[:top]


def misspell(word: str, op: str, rng: random.Random) -> str:
    """One spelling variant of ``word`` (kept readable: the first letter stays)."""
    i = rng.randrange(1, len(word) - 1)
    if op == "space":
        return word[:i] + " " + word[i:]
    if op == "drop":
        return word[:i] + word[i + 1 :]
    if op == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if op == "spread":
        return " ".join(word)
    return word[:i] + word[i] + word[i:]


def _spelling(ads: Sequence[Mapping[str, Any]], rng: random.Random, limit: int) -> list[dict]:
    words = set(_indicative_words(ads))
    out = []
    for ad in rng.sample(list(ads), len(ads)):
        if ad["meta"]["class"] == "normal":
            continue
        tokens = social_v1(ad["text"]).split()
        hits = [i for i, t in enumerate(tokens) if t in words]
        if not hits:
            continue
        for i in hits:
            tokens[i] = misspell(tokens[i], rng.choice(_SPELLING_OPS), rng)
        out.append(_row(f"{ad['id']}-spell", " ".join(tokens), ad["meta"]["class"], "spelling"))
        if len(out) >= limit:
            break
    return out


def _templated(
    templates: Sequence[str], cls: str, kind: str, rng: random.Random, per: int
) -> list[dict]:
    out = []
    for t, template in enumerate(templates):
        for g, (adj, noun) in enumerate(rng.sample(GROUPS, min(per, len(GROUPS)))):
            text = template.format(adj=adj, noun=noun)
            out.append(_row(f"aug-{kind}-{t}-{g}", text, cls, kind))
    return out


def _composed(rng: random.Random, per: int) -> list[dict]:
    """``per`` rows of each composed kind (module docstring), drawn without repeats."""
    groups = [(adj, noun) for adj, noun in GROUPS]

    def fill(template: str, protected: bool = True) -> str:
        adj2, noun = rng.choice(groups)
        if not protected:
            noun = rng.choice(UNPROTECTED)
        who = rng.choice(_WHO).format(noun=noun)
        return template.format(
            who=who, noun=noun, adj=rng.choice(_INSULT_ADJ), noun2=rng.choice(_INSULT_NOUN),
            adj2=adj2, padj=rng.choice(_PRAISE_ADJ), pnoun=rng.choice(_PRAISE_NOUN),
            verb=rng.choice(_FACT_VERBS),
        )  # fmt: skip

    def draw(kind: str, cls: str, make: Any, share: float = 1.0, copies: int = 1) -> list[dict]:
        seen: set[str] = set()
        for _ in range(int(per * share) * 20):
            seen.add(make())
            if len(seen) >= per * share:
                break
        return [
            _row(f"aug-{kind}-{k}-{c}", text, cls, "composed")
            for k, text in enumerate(sorted(seen))
            for c in range(copies)
        ]

    def misspelt() -> str:
        tokens = fill(rng.choice(_ASSERT)).split()
        words = set(_INSULT_ADJ) | {n.split()[-1] for n in _INSULT_NOUN} | {"hate"}
        hits = [i for i, t in enumerate(tokens) if t in words and len(t) >= 4]
        i = rng.choice(hits)
        tokens[i] = misspell(tokens[i], rng.choice(_SPELLING_OPS), rng)
        return " ".join(tokens)

    def profane() -> str:
        if rng.random() < 0.5:
            return f"{rng.choice(_PROFANE_START)} {rng.choice(_EVERYDAY)}"
        template = rng.choice(_PROFANE_INLINE)
        return template.format(thing=rng.choice(_THINGS), quality=rng.choice(_QUALITIES))

    def literal() -> str:
        return rng.choice(_LITERAL).format(
            verb=rng.choice(_PEST_VERBS), verb2=rng.choice(_PEST_VERBS2), pests=rng.choice(_PESTS),
            junk=rng.choice(_JUNK), animals=rng.choice(_ANIMALS), illness=rng.choice(_ILLNESS),
        )  # fmt: skip

    def said(deeds: Sequence[str]) -> str:
        return fill(rng.choice(_STEREOTYPE).replace("{bad}", rng.choice(deeds)))

    def followed(judged: Sequence[str]) -> str:
        return fill(f"{rng.choice(_MENTION)} {rng.choice(judged)}")

    def harm(templates: Sequence[str], protected: bool) -> str:
        adj2, noun = rng.choice(groups)
        one = f"{adj2} person"
        if not protected:
            noun, one = rng.choice(_PEOPLE)
        return rng.choice(templates).format(
            who=rng.choice(_WHO).format(noun=noun), noun=noun, one=one, harm=rng.choice(_HARMS)
        )

    def opinion(templates: Sequence[str]) -> str:
        return f"{rng.choice(OPINION_FRAMES)} {fill(rng.choice(templates))}"

    return [
        *draw("assert", "hate", lambda: fill(rng.choice(_ASSERT))),
        *draw("question", "hate", lambda: fill(rng.choice(_QUESTION_HATE)), share=0.7),
        *draw("opinion", "hate", lambda: opinion(_ASSERT), share=0.7),
        *draw("pronoun", "hate", lambda: fill(rng.choice(_PRONOUN_HATE)), share=0.5),
        *draw("negated", "hate", lambda: fill(rng.choice(_NEGATED_HATE)), share=0.5),
        *draw("question_praise", "normal", lambda: fill(rng.choice(_QUESTION_PRAISE)), share=0.7),
        *draw("opinion_praise", "normal", lambda: opinion(_PRAISE), share=0.7),
        *draw("pronoun_praise", "normal", lambda: fill(rng.choice(_PRONOUN_PRAISE)), share=0.5),
        *draw("quoted", "normal", lambda: fill(rng.choice(_QUOTED)), share=0.7),
        *draw("unprotected", "offensive", lambda: fill(rng.choice(_ASSERT), protected=False)),
        *draw("unprotected_opinion", "offensive",
              lambda: f"{rng.choice(OPINION_FRAMES)} {fill(rng.choice(_ASSERT), protected=False)}",
              share=0.5),
        *draw("threat", "hate", lambda: fill(rng.choice(_THREAT))),
        *draw("misspelt", "hate", misspelt),
        *draw("deny", "normal", lambda: fill(rng.choice(_DENY)), share=2.0),
        *draw("praise", "normal", lambda: fill(rng.choice(_PRAISE)), share=1.5),
        *draw("fact", "normal", lambda: fill(rng.choice(_FACT))),
        *draw("profane", "offensive", profane),
        *draw("insult", "offensive",
              lambda: rng.choice(_PERSONAL_INSULT).format(insult=rng.choice(_INSULTS))),
        *draw("deserve", "normal", lambda: fill(rng.choice(_DESERVE)), share=0.7),
        *draw("literal", "normal", literal, share=0.7),
        *draw("complaint", "normal",
              lambda: rng.choice(_COMPLAINT).format(thing=rng.choice(_THINGS), bad=rng.choice(_BAD_THINGS)),
              share=0.5),
        *draw("homonym", "normal", lambda: rng.choice(_HOMONYM).format(breed=rng.choice(_BREEDS)), share=0.3, copies=3),
        *draw("stereotype", "hate", lambda: said(_BAD_DEEDS), share=2.0),
        *draw("stereotype_good", "normal", lambda: said(_GOOD_DEEDS), share=1.5),
        *draw("worthless", "hate", lambda: fill(rng.choice(_WORTHLESS)), share=0.7),
        *draw("worthwhile", "normal", lambda: fill(rng.choice(_WORTHWHILE)), share=0.7),
        *draw("denied_praise", "hate", lambda: fill(rng.choice(_DENIED_PRAISE)), share=0.7),
        *draw("denied_insult", "normal", lambda: fill(rng.choice(_DENIED_INSULT)), share=0.7),
        *draw("followed", "hate", lambda: followed(_JUDGED_BAD), share=0.7),
        *draw("followed_good", "normal", lambda: followed(_JUDGED_GOOD), share=0.7),
        *draw("harm_wished", "hate", lambda: harm(_HARM_WISHED, protected=True), share=0.7),
        *draw("harm_kept", "normal", lambda: harm(_HARM_KEPT, protected=True), share=0.7),
        *draw("harm_kept_people", "normal", lambda: harm(_HARM_KEPT, protected=False), share=0.7),
    ]  # fmt: skip


def _row(ad_id: str, text: str, cls: str, kind: str) -> dict[str, Any]:
    labels = {
        "hate": {"hate_speech": 1, "offensive_language": 1},
        "offensive": {"hate_speech": 0, "offensive_language": 1},
        "normal": {"hate_speech": 0, "offensive_language": 0},
    }[cls]
    return {
        "id": ad_id,
        "text": text,
        "labels": dict(labels),
        "meta": {"class": cls, "augment": kind},
    }


def augmentations(ads: Sequence[Mapping[str, Any]], *, seed: int = 42) -> list[dict[str, Any]]:
    """Augmented training rows for ``ads`` (training rows with ``meta.class``), deterministic.

    Returns about 12,000 rows: see the module docstring for the methods.
    """
    rng = random.Random(seed)
    out = _swap_identity(ads, rng, limit=1500)
    out += _spelling(ads, rng, limit=1500)
    out += _templated(_BENIGN, "normal", "identity_benign", rng, per=len(GROUPS))
    out += _templated(_COUNTER, "normal", "counter_speech", rng, per=30)
    out += _templated(_HATE, "hate", "hate_template", rng, per=20)
    for k, text in enumerate(_HATE_WOMEN + _HATE_DISABLED):
        for r in range(5):  # the same sentence a few times: these targets are rare in the sources
            out.append(_row(f"aug-hate-target-{k}-{r}", text, "hate", "hate_template"))
    return out + _composed(rng, per=300)
